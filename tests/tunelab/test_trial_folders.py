"""Trial folder names: written and parsed by one pair, for both kinds of Ray trial id."""
import re

from hypothesis import given
from hypothesis import strategies as st

from tunelab.core.trial_folders import parse_trial_folder_name, trial_folder_name, trial_folder_pattern

METHODS = st.sampled_from(["classifier", "finetune", "randreg", "adarand", "arcface", "my_method", "fnp2"])
SEARCHER_IDS = st.text("0123456789abcdef", min_size=8, max_size=8)  # under a Searcher (Optuna)
RANDOM_IDS = st.builds(lambda head, n: f"{head}_{n:05d}", st.text("0123456789abcdef", min_size=5, max_size=5),
                       st.integers(0, 99999))  # Ray's own random search: 5 hex digits and a counter


@given(METHODS, st.one_of(SEARCHER_IDS, RANDOM_IDS))
def test_a_written_name_parses_back_to_its_method_and_trial_id(method, trial_id):
    name = trial_folder_name(method, trial_id)
    assert parse_trial_folder_name(name, method) == (method, trial_id)
    assert parse_trial_folder_name(name) == (method, trial_id)


def test_a_random_search_trial_id_keeps_its_counter():
    # rsplit("_", 1) read "00003" here, losing the id's head
    assert parse_trial_folder_name("classifier_240d1_00003") == ("classifier", "240d1_00003")


def test_what_is_not_a_trial_folder():
    for name in ("classifier", "classifier_", "classifier_xyz12345", "wandb", "classifier_240d1_3",
                 "checkpoint_000001", "classifier_1234", "classifier_123456789"):
        assert parse_trial_folder_name(name, "classifier") is None, name
    assert parse_trial_folder_name("finetune_a05b73bf", "classifier") is None
    assert trial_folder_pattern("a.b").fullmatch("axb_a05b73bf") is None  # the method is literal, not a regex
    assert isinstance(trial_folder_pattern(), re.Pattern)


def test_only_rays_two_id_forms_are_trial_ids():
    # 8 hex digits (a searcher's trials), or 5 hex digits, '_' and a 5-digit counter (Ray's random search)
    for name in ("classifier_decade", "classifier_00001", "classifier_abcdef1", "classifier_a05b73bf_00001"):
        assert parse_trial_folder_name(name, "classifier") is None, name
