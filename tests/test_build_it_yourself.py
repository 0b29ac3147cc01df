"""The three "build it yourself" exercises: the whole model (05.whole_model), the training loop
(06.train_steps) and cached decoding (06.cached_greedy). tests/test_exercises.py checks every
solution, named mistake and stub in general; here, specific failures in plain words, and the facts the
checks rest on (the loop equals Trainer, the cache equals generate past block_size). Every check decides
on plain data (see checking.py): the model, the trained weights and the tokens are read in the process
that ran the learner's code."""

import copy
import sys
from pathlib import Path

import torch

from tfa_core.model.registry import get_model
from tfa_core.teaching.exercises import CORRECT, ERROR, INCORRECT, check, get_exercise, list_exercises
from tfa_core.teaching.exercises.kv_decoding import (CallNotAllowed, _decode_variant, arm, decoding_model,
                                                     disarm)
from tfa_core.teaching.exercises.training_loop import (loop_batches, loop_config, loop_model,
                                                        reference_train_steps)
from tfa_core.teaching.exercises.whole_model import (SketchModel, reference_whole_model, whole_model_config,
                                                     wrong_model)

sys.path.insert(0, str(Path(__file__).parent))
from test_exercises import solutions  # noqa: E402


def test_at_least_28_exercises_with_the_three_built_by_hand():
    exercises = list_exercises()
    assert len(exercises) >= 28
    assert {"05.whole_model", "06.train_steps", "06.cached_greedy"} <= set(exercises)


# -- 05.whole_model --------------------------------------------------------------------------------------


def test_the_written_out_model_equals_tfa_core_past_block_size_for_every_option():
    for options in (dict(), dict(use_v=True), dict(use_proj=True), dict(use_v=True, use_proj=True)):
        config = whole_model_config(6, **options)
        reference = reference_whole_model(config)
        mine = solutions("05").TokenFactoredModel(config)
        assert set(dict(mine.named_parameters())) == set(dict(reference.named_parameters()))
        mine.load_state_dict({k: v for k, v in reference.named_parameters()}, strict=False)
        ids = torch.randint(0, config.vocab_size, (2, 3 * config.block_size))
        with torch.no_grad():
            assert torch.allclose(mine(ids), reference(ids)["logits"], atol=1e-5)
        assert mine.lm_head.weight is mine.transformer.wte.weight


def test_the_sketch_without_a_mistake_is_correct_and_the_checks_own_loading_is_not_a_copy():
    result = check("05.whole_model", SketchModel)
    assert result.status == CORRECT and result.flag == ""
    assert "calls tfa_core" not in check("05.whole_model", solutions("05").TokenFactoredModel).flag


def test_a_model_built_by_tfa_core_passes_but_is_flagged():
    result = check("05.whole_model", lambda config: get_model("FactoredALiBi", config))
    assert result.status == CORRECT and "get_model" in result.flag


def test_closed_form_slopes_pass_four_heads_and_fail_at_six():
    result = check("05.whole_model", wrong_model("closed-form slopes"))
    assert result.status == INCORRECT and result.passed == 1
    assert "6 heads" in result.case and "closed-form" in result.hint
    assert result.message.startswith("logits on 12 tokens: entry [row ")
    assert result.expected.startswith("logits on 12 tokens: tensor of shape (2, 12, 37)")


def test_values_from_both_streams_and_the_mlp_writing_xt_are_named_together():
    result = check("05.whole_model", wrong_model("values from both streams"))
    assert result.status == INCORRECT and result.passed == 0
    assert "the MLP writes to xt" in result.hint and "xt + xe" in result.hint


def test_an_untied_head_and_a_position_table_are_named_from_the_parameter_names():
    untied = check("05.whole_model", wrong_model("untied head"))
    assert "lm_head.weight is a parameter of its own" in untied.message
    table = check("05.whole_model", wrong_model("learned positions"))
    assert "position table (transformer.wpe.weight)" in table.message and "pollutes" in table.hint


def test_a_dense_value_matrix_passes_without_use_v_and_fails_with_it_on_its_shape():
    result = check("05.whole_model", wrong_model("dense value matrix"))
    assert result.passed == 2 and "use_v" in result.case
    assert "transformer.h.0.attn.v_mix has shape (48, 48), expected (6, 6)" in result.message
    assert "H x H" in result.hint


def test_a_mask_buffer_of_block_size_fails_past_it_with_the_reason():
    answer = solutions("05").TokenFactoredModel

    class FixedMask(answer):
        def forward(self, idx):
            if idx.shape[1] > self.config.block_size:
                raise IndexError("the mask covers only block_size positions")
            return super().forward(idx)

    result = check("05.whole_model", FixedMask)
    assert result.status == INCORRECT and result.passed == 0
    assert "raised IndexError on 29 tokens (longer than block_size = 12)" in result.message
    assert "ALiBi has no length limit" in result.message


def test_an_instance_or_a_function_returning_logits_is_refused_in_words():
    result = check("05.whole_model", lambda config: torch.zeros(2, 12, 37))
    assert result.status == INCORRECT and "should give an nn.Module" in result.message
    assert "got Tensor" in result.message
    result = check("05.whole_model", lambda config: SketchModel)
    assert result.status == INCORRECT and "got type" in result.message


# -- 06.train_steps ------------------------------------------------------------------------------------


def test_the_plain_loop_gives_the_trainers_weights_outside_the_check_too():
    batches, config = loop_batches(5), loop_config()
    expected = reference_train_steps(loop_model(use_v=True), batches, config)
    trained = solutions("06").train_steps(loop_model(use_v=True), batches, config)
    for name, p in trained.named_parameters():
        assert torch.allclose(p, expected[name], atol=1e-6), name
    assert not torch.allclose(expected["transformer.wte.weight"],
                              loop_model().transformer.wte.weight, atol=1e-3)  # it did train


def test_the_loop_runs_with_gradients_inside_check():
    seen = []

    def spy(model, batches, config):
        model(batches[0])
        seen.append(torch.is_grad_enabled())
        return solutions("06").train_steps(model, batches, config)

    assert check("06.train_steps", spy).status == CORRECT
    assert seen and all(seen)
    assert get_exercise("06.train_steps").needs_grad and not get_exercise("05.whole_model").needs_grad
    assert torch.is_grad_enabled()  # and the switch did not leak out of the check


def test_a_loop_that_forgets_to_return_the_model_is_told_so():
    def no_return(model, batches, config):
        solutions("06").train_steps(model, batches, config)

    result = check("06.train_steps", no_return)
    assert result.status == INCORRECT and "return" in result.hint


def test_decaying_the_embedding_is_named_with_the_parameter_that_differs():
    def dim_rule(model, batches, config):
        params = list(model.parameters())
        optimizer = torch.optim.AdamW(
            [{"params": [p for p in params if p.dim() >= 2], "weight_decay": config.weight_decay},
             {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}],
            lr=config.learning_rate, betas=(config.beta1, config.beta2))
        for step, ids in enumerate(batches):
            from tfa_core.training.trainer import learning_rate_at
            for group in optimizer.param_groups:
                group["lr"] = learning_rate_at(step, config)
            loss = model(ids, labels=ids)["loss"]
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
        return model

    result = check("06.train_steps", dim_rule)
    assert result.status == INCORRECT and result.passed == 0
    assert "transformer.wte.weight" in result.message and "p.dim() >= 2" in result.hint


# -- 06.cached_greedy ----------------------------------------------------------------------------------


def test_the_hand_written_cache_equals_generate_past_block_size():
    model = decoding_model(n_head=6, use_v=True, use_proj=True)
    prompt = torch.randint(0, 41, (2, 7), generator=torch.Generator().manual_seed(0))
    mine = solutions("06").cached_greedy(model, prompt, 30)  # 37 > block_size 12
    assert torch.equal(mine, model.generate(prompt, 30, temperature=0))
    for case in get_exercise("06.cached_greedy").cases():  # the check's tokens follow the context:
        model, prompt, n_new = case.args  # a random model otherwise repeats one token
        new = disarm(model).generate(prompt, n_new, temperature=0)[0, prompt.shape[1]:]
        assert len(set(new.tolist())) >= 2, case.label


def test_the_guards_and_their_budget_survive_the_checks_deep_copies():
    model, prompt, n_new = get_exercise("06.cached_greedy").cases()[0].args
    copied = copy.deepcopy(model)
    try:
        copied(prompt)
        raise AssertionError("the copied model could be called")
    except CallNotAllowed:
        pass
    wte = copied.transformer.wte
    assert wte(prompt).abs().sum() > 0 and wte._check_seen == prompt.shape[1]
    assert model.transformer.wte._check_seen == 0  # each copy counts from zero
    assert wte(torch.zeros(1, n_new + 1, dtype=torch.long)).abs().sum() == 0  # past the budget: zeros
    assert torch.equal(disarm(copy.deepcopy(model)).generate(prompt, n_new, temperature=0),
                       disarm(arm(decoding_model(), 9)).generate(prompt, n_new, temperature=0))


def test_calling_the_model_itself_is_an_error_that_says_what_to_use():
    def uses_generate(model, prompt_ids, n_new):
        return model.generate(prompt_ids, n_new, temperature=0)

    result = check("06.cached_greedy", uses_generate)
    assert result.status == ERROR and "CallNotAllowed" in result.got
    assert "attn.c_attn" in result.got


def test_recomputing_runs_past_the_budget_and_is_named():
    def recompute(model, prompt_ids, n_new):
        """Greedy decoding that runs the whole sequence at every step (the cache emptied each time)."""
        ids = prompt_ids
        for _ in range(n_new):
            full = solutions("06").cached_greedy(model, ids, 1)  # a fresh cache: the whole sequence again
            ids = full
        return ids

    result = check("06.cached_greedy", recompute)
    assert result.status == INCORRECT and result.passed == 0
    assert "4 new ones" in result.case and "accept 9 positions each" in result.case
    assert "O(n^2)" in result.hint


def test_the_newest_key_masked_passes_a_short_run_and_fails_past_block_size():
    result = check("06.cached_greedy", _decode_variant("newest key masked"))
    assert result.status == INCORRECT and result.passed == 1
    assert "past block_size" in result.case and "bias 0" in result.hint


# -- the grader ------------------------------------------------------------------------------------------


def test_the_grader_grades_a_class_a_loop_and_a_cache(tmp_path, capsys):
    from tfa_core.teaching import grading
    from test_grader import learner_notebook, rows, source

    carol_05 = learner_notebook(tmp_path, "carol_05.ipynb", "05_assembling_the_model.ipynb", {
        "05.whole_model": source("05", "TokenFactoredModel"),  # a class
    })
    carol_06 = learner_notebook(tmp_path, "carol_06.ipynb", "06_training.ipynb", {
        "06.train_steps": source("06", "train_steps"),  # needs gradients inside the check
        "06.cached_greedy": "def cached_greedy(model, prompt_ids, n_new):\n"
                            "    return model.generate(prompt_ids, n_new, temperature=0)\n",
    })
    grading.main([str(carol_05), str(carol_06), "--timeout", "60", "--jobs", "2"])
    found = rows(capsys.readouterr().out)
    assert found["05.whole_model"] == "correct"
    assert found["06.train_steps"] == "correct"
    assert found["06.cached_greedy"] == "error"
    assert found["05.parameter_count"] == "not attempted"
