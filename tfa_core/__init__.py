"""tfa_core: the reference implementation of the Token-Factored Transformer with ALiBi.

The names here are the ones the course and the original tutorial use::

    from tfa_core import load_alibi_config_preset, create_tokenizer, get_model
    config = load_alibi_config_preset("small")
    config.update_from_tokenizer(create_tokenizer("gpt2"))
    model = get_model("FactoredALiBi", config)
"""

from .alibi import alibi_bias, alibi_slopes, causal_mask
from .attention import channel_mix, kronecker_lift, reference_attention
from .baselines import SASPTransformer, VanillaGPT, VanillaGPTALiBi
from .checkpoint import load_checkpoint, save_checkpoint
from .comparison import run_comprehensive_comparison
from .config import (
    PRESETS,
    GPTConfigALiBi,
    format_config,
    list_presets,
    load_alibi_config_preset,
    print_config_alibi,
)
from .course import QUICK_ENV, environment_report, quick_mode
from .data import (
    encode_corpus,
    load_shakespeare,
    load_text,
    prepare_causal_lm_dataset,
    random_batch,
    train_val_split,
)
from .generation import generate_tokens, stream_generate
from .kv_cache import KVCache
from .language_model import CausalLanguageModel, causal_lm_loss
from .model import FactoredTransformerModel, FactoredTransformerModelALiBi
from .evaluation import evaluate_length, evaluate_lengths, test_length_extrapolation
from .parameters import estimate_model_parameters, parameter_breakdown
from .plotting import LiveLossPlot
from .positions import POSITION_SCHEMES
from .registry import get_model, list_available_models
from .sampling import sample_next_token, top_k_filter, top_p_filter
from .study import run_extrapolation_study
from .tokenizers import CharacterTokenizer, GPT2Tokenizer, create_tokenizer
from .training import Trainer, TrainingConfig, train_model

__version__ = "0.1.0"
