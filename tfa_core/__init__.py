"""tfa_core: the reference implementation of the Token-Factored Transformer with ALiBi.

The names here are the ones the course and the original tutorial use::

    from tfa_core import load_alibi_config_preset, create_tokenizer, get_model
    config = load_alibi_config_preset("small")
    config.update_from_tokenizer(create_tokenizer("gpt2"))
    model = get_model("FactoredALiBi", config)
"""

from tfa_core.model.alibi import alibi_bias, alibi_slopes, causal_mask
from tfa_core.model.factored import channel_mix, kronecker_lift
from tfa_core.model.baselines import SASPTransformer, VanillaGPT, VanillaGPTALiBi
from tfa_core.training.checkpoint import load_checkpoint, save_checkpoint
from tfa_core.experiments.comparison import run_comprehensive_comparison
from tfa_core.model.config import (
    PRESETS,
    GPTConfigALiBi,
    format_config,
    list_presets,
    load_alibi_config_preset,
    print_config_alibi,
)
from tfa_core.teaching.environment import QUICK_ENV, environment_report, quick_mode
from tfa_core.data.corpus import (
    encode_corpus,
    load_shakespeare,
    load_text,
    prepare_causal_lm_dataset,
    random_batch,
    train_val_split,
)
from tfa_core.decoding.generate import generate_tokens, stream_generate
from tfa_core.model.kv_cache import KVCache
from tfa_core.model.common import CausalLanguageModel, causal_lm_loss
from tfa_core.model.factored import (
    FactoredTransformer,
    FactoredTransformerModel,
    FactoredTransformerModelALiBi,
)
from tfa_core.experiments.evaluation import evaluate_length, evaluate_lengths, test_length_extrapolation
from tfa_core.model.parameters import estimate_model_parameters, parameter_breakdown
from tfa_core.training.live_plot import LiveLossPlot
from tfa_core.model.positions import POSITION_SCHEMES
from tfa_core.model.registry import get_model, list_available_models, register_model
from tfa_core.decoding.sampling import sample_next_token, top_k_filter, top_p_filter
from tfa_core.experiments.study import run_extrapolation_study
from tfa_core.data.tokenizers import CharacterTokenizer, GPT2Tokenizer, create_tokenizer
from tfa_core.training.trainer import Trainer, TrainingConfig, train_model
from tfa_core.training.loggers import CSVLogger, TensorBoardLogger

__version__ = "0.1.0"

# The public names: what the imports above re-export (the course and the tutorial use them).
__all__ = [
    "__version__",
    # the model: ALiBi, the factored stream, the baselines, configuration and size
    "alibi_bias", "alibi_slopes", "causal_mask", "channel_mix", "kronecker_lift",
    "FactoredTransformer", "FactoredTransformerModel", "FactoredTransformerModelALiBi",
    "SASPTransformer", "VanillaGPT", "VanillaGPTALiBi", "CausalLanguageModel", "causal_lm_loss",
    "KVCache", "POSITION_SCHEMES", "get_model", "list_available_models", "register_model",
    "PRESETS", "GPTConfigALiBi", "format_config", "list_presets", "load_alibi_config_preset",
    "print_config_alibi", "estimate_model_parameters", "parameter_breakdown",
    # data and tokenizers
    "encode_corpus", "load_shakespeare", "load_text", "prepare_causal_lm_dataset", "random_batch",
    "train_val_split", "CharacterTokenizer", "GPT2Tokenizer", "create_tokenizer",
    # training and checkpoints
    "Trainer", "TrainingConfig", "train_model", "LiveLossPlot", "CSVLogger", "TensorBoardLogger",
    "load_checkpoint", "save_checkpoint",
    # decoding
    "generate_tokens", "stream_generate", "sample_next_token", "top_k_filter", "top_p_filter",
    # experiments
    "evaluate_length", "evaluate_lengths", "test_length_extrapolation", "run_comprehensive_comparison",
    "run_extrapolation_study",
    # the course's environment
    "QUICK_ENV", "environment_report", "quick_mode",
]
