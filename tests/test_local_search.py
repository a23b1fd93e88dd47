"""Local search: spliced full trajectories, acceptance rules, and the MH chain's stationary law."""

from __future__ import annotations

import pytest
import torch

from gfn import Sampler, build_gflownet, metrics
from gfn.env import Reward
from gfn.envs import HyperGrid
from gfn.local_search import (LocalSearch, accept_greedy, accept_mh, mh_log_ratio, parse_local_search,
                              splice)
from gfn.objectives import get_objective


class TableReward(Reward):
    """log R from a fixed random table indexed by grid cell."""

    def __init__(self, env_height: int, ndim: int, seed: int = 0, scale: float = 1.0):
        g = torch.Generator().manual_seed(seed)
        self.powers = env_height ** torch.arange(ndim - 1, -1, -1)
        self.table = scale * torch.randn(env_height ** ndim, generator=g)

    def log_reward(self, states):
        return self.table[(states * self.powers).sum(-1)]


class LevelGrid(HyperGrid):
    """HyperGrid whose objects are the cells with coordinate sum ``depth`` (fixed-length
    trajectories, like the sequence tasks): exit is allowed there and only there."""

    def __init__(self, ndim=3, height=5, depth=4, seed=0):
        super().__init__(ndim, height, reward=TableReward(height, ndim, seed, scale=1.0))
        self.depth = depth

        cells = super().enumerate_states()
        self._cells = cells[cells.sum(-1) <= depth]  # states above the level are unreachable
        self._compact = torch.full((self.n_states,), -1, dtype=torch.long)
        self._compact[super().state_index(self._cells)] = torch.arange(len(self._cells))

    def forward_mask(self, states):
        s = states.sum(-1, keepdim=True)
        ok = (states < self.height - 1) & (s < self.depth)
        return torch.cat([ok, s == self.depth], dim=1)

    def enumerate_states(self):
        return self._cells

    def state_index(self, states):
        return self._compact[super().state_index(states)]


def fixed_random_model(env, seed=0, scale=1.0):
    """A model with a strongly non-uniform, fixed P_F and P_B."""
    torch.manual_seed(seed)
    model = build_gflownet(env, hidden=32, n_layers=1)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, scale / max(p.shape[-1], 1) ** 0.5 if p.dim() > 1 else 0.5)
    return model


def run_chain(env, model, k, steps, n_chains, accept="mh", seed=0, burn_in=10):
    """Empirical distribution of the local-search chain over env.enumerate_states() indices."""
    torch.manual_seed(seed)
    sampler = Sampler(env, model)
    ls = LocalSearch(k, 1, accept=accept)
    batch = sampler.sample(n_chains)
    x, log_r = batch.terminal_states, batch.log_rewards
    counts = torch.zeros(len(env.enumerate_states()), dtype=torch.float64)
    for t in range(steps):
        cur, _ = ls.step(sampler, x, log_r)
        x, log_r = cur.terminal_states, cur.log_rewards
        if t >= burn_in:
            counts += torch.bincount(env.state_index(x), minlength=counts.numel()).double()
    return counts / counts.sum(), ls


def inverted_ratio(log_r_old, log_r_new, log_pf_old, log_pb_old, log_pf_new, log_pb_new, reverse_possible,
                   generator=None):
    """The defective rule (proposal terms inverted, as in torchgfn's sampler): must NOT converge."""
    log_alpha = (log_r_new - log_r_old) + (log_pf_new - log_pf_old) + (log_pb_old - log_pb_new)
    u = torch.rand(log_alpha.shape, generator=generator, dtype=torch.float64)
    return (torch.log(u) < log_alpha.double()) & reverse_possible


# ------------------------------------------------------------------------ the chain's target
def test_mh_chain_converges_to_reward_distribution_and_inverted_ratio_does_not():
    env = LevelGrid(ndim=3, height=5, depth=4, seed=1)
    model = fixed_random_model(env, seed=0, scale=1.0)
    target = metrics.target_distribution(env)
    # the fixed policy alone is far from the target, so the chain must do the work
    assert metrics.tv(metrics.exact_terminal_distribution(env, model), target) > 0.4
    # chains start from P_F samples; histogram over the second half of 200 moves
    p_mh, ls = run_chain(env, model, k=2, steps=200, n_chains=1000, burn_in=100)
    p_inv, _ = run_chain(env, model, k=2, steps=60, n_chains=1000, burn_in=30, accept=inverted_ratio)
    assert metrics.tv(p_mh, target) <= 0.05, metrics.tv(p_mh, target)
    assert metrics.tv(p_inv, target) > 0.15, metrics.tv(p_inv, target)
    assert 0.05 < ls.acceptance_rate < 0.95


def test_mh_chain_variable_length_hypergrid_independence_moves():
    """K >= the longest trajectory: every move restarts from s_0 (an independence sampler)."""
    env = HyperGrid(2, 4, reward=TableReward(4, 2, seed=3, scale=1.0))
    model = fixed_random_model(env, seed=1)
    target = metrics.target_distribution(env)
    assert metrics.tv(metrics.exact_terminal_distribution(env, model), target) > 0.2
    p, _ = run_chain(env, model, k=6, steps=300, n_chains=600, burn_in=150)
    assert metrics.tv(p, target) <= 0.05, metrics.tv(p, target)


def test_reverse_move_impossible_is_rejected():
    """On the plain hypergrid a K-step backtrack followed by a reconstruction of another length
    cannot be reversed, so MH must reject it (the chain keeps each object's depth)."""
    env = HyperGrid(2, 6)
    model = fixed_random_model(env, seed=2, scale=0.5)
    torch.manual_seed(0)
    sampler = Sampler(env, model)
    batch = sampler.sample(400)
    x = batch.terminal_states
    keep_depth = x.sum(-1) > 2  # backtracking 2 steps cannot reach s_0
    cur, acc = LocalSearch(2, 1).step(sampler, x, batch.log_rewards)
    moved_depth = cur.terminal_states.sum(-1) != x.sum(-1)
    assert not bool((moved_depth & keep_depth).any())


# ------------------------------------------------------------------------ acceptance rules
def test_mh_log_ratio_matches_hand_computation():
    lr_o, lr_n = torch.tensor([0.0, 1.0]), torch.tensor([1.0, float("-inf")])
    pf_o, pb_o = torch.tensor([-1.0, -2.0]), torch.tensor([-0.5, -0.1])
    pf_n, pb_n = torch.tensor([-3.0, -1.0]), torch.tensor([-0.2, -0.3])
    got = mh_log_ratio(lr_o, lr_n, pf_o, pb_o, pf_n, pb_n)
    want0 = (1.0 + -0.2 + -1.0) - (0.0 + -0.5 + -3.0)
    assert got[0].item() == pytest.approx(want0)
    assert got[1].item() == float("-inf")
    # invalid old object: anything valid is accepted
    assert mh_log_ratio(torch.tensor([float("-inf")]), torch.tensor([0.0]), *([torch.zeros(1)] * 4)).item() == float("inf")


def test_accept_rules():
    lr_o, lr_n = torch.tensor([0.0, 0.0, 1.0]), torch.tensor([1.0, 0.0, 0.5])
    z = torch.zeros(3)
    assert accept_greedy(lr_o, lr_n).tolist() == [True, False, False]
    ok = torch.tensor([True, True, False])
    g = torch.Generator().manual_seed(0)
    acc = accept_mh(lr_o, lr_n + torch.tensor([0, 50.0, 50.0]), z, z, z, z, ok, generator=g)
    assert acc.tolist() == [True, True, False]  # alpha >= 1 accepts; impossible reverse rejects


# ------------------------------------------------------------------------ spliced trajectories
def _assert_consistent(env, batch):
    """Every trajectory starts at s_0, steps forward with its actions, steps back with its
    backward actions, and ends with exit at its terminal state."""
    st, act, bwd = batch.states, batch.actions, batch.bwd_actions
    assert bool(env.is_initial(batch.initial_states).all())
    assert bool((act[batch.last_rows] == env.exit_action).all())
    inner = (~batch.is_last).nonzero().squeeze(1)
    assert torch.equal(env.step(st[inner], act[inner]), st[inner + 1])
    assert torch.equal(env.backward_step(st[inner + 1], bwd[inner + 1]), st[inner])


def test_splice_joins_prefix_and_suffix_consistently():
    env = HyperGrid(2, 5)
    model = fixed_random_model(env, seed=0, scale=0.5)
    torch.manual_seed(0)
    sampler = Sampler(env, model)
    full = sampler.sample(64)
    back = sampler.sample_backward(full.terminal_states)
    keep = ((back.lengths - 1) // 2)
    s = back.states[back.ptr[:-1] + keep]
    tail = sampler.sample(64, initial_states=s)
    joined = splice(back, keep, tail)
    _assert_consistent(env, joined)
    assert torch.equal(joined.lengths, keep + tail.lengths)
    assert torch.equal(joined.terminal_states, tail.terminal_states)
    with pytest.raises(ValueError, match="keep"):
        splice(back, back.lengths, tail)


@pytest.mark.parametrize("accept", ["mh", "deterministic"])
def test_hook_trains_on_full_trajectories_and_logs_acceptance(accept):
    env = LevelGrid(ndim=3, height=5, depth=4)
    objective = get_objective("tb")
    model = objective.build_model(env, hidden=32, n_layers=1)

    class T:  # the parts of a Trainer the hook uses
        sampler = Sampler(env, model)

    torch.manual_seed(0)
    batch = T.sampler.sample(32)
    ls = LocalSearch(2, 3, accept=accept)
    out = ls(T, batch)
    assert out.batch_size == 64
    _assert_consistent(env, out)
    rate = out.info["ls_acceptance_rate"]
    assert 0.0 <= rate <= 1.0 and ls.n_proposals == 96 and ls.n_reward_calls == 96
    assert torch.allclose(out.log_rewards, env.log_reward(out.terminal_states))
    if accept == "deterministic":  # the refined objects are never worse than their start
        assert bool((out.log_rewards[32:] >= batch.log_rewards - 1e-6).all())
    loss = objective.loss(model, out)
    loss.backward()
    assert torch.isfinite(loss)


def test_parse_and_errors():
    assert parse_local_search("2,7") == (2, 7)
    assert parse_local_search([3, 1]) == (3, 1)
    assert parse_local_search("") is None and parse_local_search([]) is None
    for bad in ("2", "0,1", "a,b"):
        with pytest.raises(ValueError, match="local-search"):
            parse_local_search(bad)
    with pytest.raises(ValueError, match="acceptance"):
        LocalSearch(2, 1, accept="metropolis")


def test_modes_benchmark_runs_on_the_chosen_mdp_and_spends_the_budget(tmp_path, data_dir):
    import os
    import sys
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "benchmarks"))
    import local_search_modes as bench

    env = bench.make_env("tfbind8", str(data_dir), "prepend_append")
    assert env.mdp.name == "prepend_append" and bench.make_env("tfbind8", str(data_dir)).mdp.name == "append"
    report = bench.main(["--tasks", "tfbind8", "--mdp", "prepend_append", "--seeds", "0", "--budget", "256",
                         "--batch-size", "8", "--ls-iterations", "1", "--k", "3", "--hidden", "16",
                         "--record-every", "64", "--data-dir", str(data_dir), "--out", str(tmp_path / "ls")])
    assert report["setting"]["mdp"] == "prepend_append"
    by_method = {r["method"]: r for r in report["runs"]}
    assert set(by_method) == {"tb", "tb-rounds", "tb+ls"}
    for r in by_method.values():  # every method stops at the first batch that reaches the budget
        assert 256 <= r["reward_calls"] < 256 + r["batch_size"] * 2
        assert 0 <= r["modes_trained"] <= r["modes_evaluated"] <= r["n_modes"] == 328
    assert (tmp_path / "ls.json").is_file() and (tmp_path / "ls.png").is_file()


def test_local_search_counters_resume_and_its_generator_makes_it_reproducible():
    from gfn.checkpoint import stateful_hooks
    env = HyperGrid(2, 4)
    obj = get_objective("tb")
    torch.manual_seed(0)
    model = obj.build_model(env, hidden=16, n_layers=1)
    sampler = Sampler(env, model)
    batch = sampler.sample(8, generator=torch.Generator().manual_seed(1))

    def refine(global_seed):
        torch.manual_seed(global_seed)
        ls = LocalSearch(2, 2, accept="mh", generator=torch.Generator().manual_seed(7))
        return ls, ls.search(sampler, batch)[0]

    (ls, a), (_, b) = refine(0), refine(123)
    assert torch.equal(a.states, b.states) and torch.equal(a.ptr, b.ptr)  # no draw from the global RNG
    fresh = LocalSearch(2, 2)
    fresh.load_state_dict(ls.state_dict())
    assert (fresh.n_proposals, fresh.n_accepted, fresh.n_reward_calls) == (16, ls.n_accepted, 16)

    class T:
        hooks, batch_hooks = [], [ls]
    assert list(stateful_hooks(T)) == ["batch_hooks/0/LocalSearch"]


def test_each_move_evaluates_only_the_candidates_reward(count_reward_calls):
    env = HyperGrid(2, 4)
    calls = count_reward_calls(env)
    torch.manual_seed(0)
    model = get_objective("tb").build_model(env, hidden=8, n_layers=1)
    sampler = Sampler(env, model)
    batch = sampler.sample(6)
    calls.clear()
    ls = LocalSearch(1, 3)
    ls.search(sampler, batch)
    assert sum(calls) == ls.n_reward_calls == 18


@pytest.mark.parametrize("spec", ["2.5,1", [2.5, 1], [True, 1], "1,x"])
def test_local_search_spec_must_be_integers(spec):
    with pytest.raises(ValueError, match="two positive integers"):
        parse_local_search(spec)
    assert parse_local_search([3.0, 2]) == (3, 2)


# ------------------------------------------------------------------------ K semantics, Barker, the paper protocol
class SeqTableReward(Reward):
    """log R of a fixed-length sequence from a random table over its base-V code."""

    def __init__(self, vocab: int, length: int, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.powers = vocab ** torch.arange(length - 1, -1, -1)
        self.table = torch.randn(vocab ** length, generator=g)

    def log_reward(self, states):
        return self.table[(states * self.powers).sum(-1)]


def test_k_counts_non_exit_steps_on_the_append_mdp():
    """K=3 on an append MDP of fixed length 8: x' keeps the first five tokens of x and each of
    the last three positions does change in some moves (the authors' k=4 is this K=3)."""
    from gfn.envs.sequences import SequenceEnv
    env = SequenceEnv(4, 8, 8, mdp="append", reward=SeqTableReward(4, 8))
    model = fixed_random_model(env, seed=3, scale=0.3)
    sampler = Sampler(env, model)
    batch = sampler.sample(400)
    x = batch.terminal_states
    _, _, new = LocalSearch(3, 1, accept="deterministic").move(sampler, x, batch.log_rewards)
    x_new = new.terminal_states
    assert torch.equal(x_new[:, :5], x[:, :5])
    changed = (x_new != x).any(0)
    assert changed.tolist() == [False] * 5 + [True] * 3
    assert bool(((new.lengths - 1) == 8).all())  # full trajectories from s_0, never pieces


def test_barker_chain_leaves_the_reward_distribution_invariant():
    env = LevelGrid(ndim=3, height=5, depth=4, seed=1)
    model = fixed_random_model(env, seed=0, scale=1.0)
    target = metrics.target_distribution(env)
    p_barker, ls = run_chain(env, model, k=2, steps=200, n_chains=1000, burn_in=100, accept="barker")
    assert metrics.tv(p_barker, target) <= 0.05, metrics.tv(p_barker, target)
    assert 0.05 < ls.acceptance_rate < 0.95


def test_barker_accepts_with_probability_alpha_over_one_plus_alpha():
    from gfn.local_search import accept_barker
    n = 200_000
    z = torch.zeros(n)
    log_alpha = torch.full((n,), 0.7)
    acc = accept_barker(z, log_alpha, z, z, z, z, torch.ones(n, dtype=torch.bool),
                        generator=torch.Generator().manual_seed(0))
    expected = 1 / (1 + torch.exp(torch.tensor(-0.7))).item()
    assert abs(acc.double().mean().item() - expected) < 0.005
    assert not accept_barker(z, log_alpha, z, z, z, z, torch.zeros(n, dtype=torch.bool)).any()


def _paper_trainer(env, rounds, replay_batch=5):
    from gfn import Trainer, TrainerConfig
    from gfn.replay import RewardPrioritizedReplay
    obj = get_objective("tb")
    model = obj.build_model(env, hidden=16, n_layers=1)
    seen = []

    def record(trainer, batch):
        seen.append(batch)
        return batch
    trainer = Trainer(env, model, obj, TrainerConfig(batch_size=replay_batch), batch_hooks=[record])
    trainer.replay = RewardPrioritizedReplay(10_000)
    trainer.batch_source = rounds
    return trainer, seen


@pytest.mark.parametrize("with_ls", [True, False])
def test_paper_protocol_spends_exactly_n_reward_calls_per_round(count_reward_calls, with_ls):
    from gfn.local_search import PaperRounds
    from gfn.envs.sequences import SequenceEnv
    env = SequenceEnv(3, 4, 4, mdp="append", reward=SeqTableReward(3, 4))
    calls = count_reward_calls(env)
    ls = LocalSearch(2, 3, accept="barker") if with_ls else None
    rounds = PaperRounds(n_calls=8, steps_per_batch=2, replay_batch=5, local_search=ls)
    trainer, seen = _paper_trainer(env, rounds)
    assert rounds.iterations_per_round == 4
    for r in range(3):
        for _ in range(rounds.iterations_per_round):
            trainer.train_step()
        assert sum(calls) == 8 * (r + 1) == rounds.n_reward_calls
    assert trainer.iteration == 12 and rounds.n_rounds == 3 and rounds.phase == 0
    assert trainer.n_samples == 3 * (2 if with_ls else 8)  # M = n / (I + 1) fresh samples per round
    # each round: the same online batch (all n evaluated objects) for 2 steps, then one replay batch for 2
    assert [b.batch_size for b in seen[:4]] == [8, 8, 5, 5]
    assert seen[0] is seen[1] and seen[2] is seen[3] and seen[0] is not seen[4]
    # every evaluated object went to the replay buffer
    assert len(trainer.replay) == len(torch.unique(torch.cat([b.terminal_states for b in seen[::4]]), dim=0))
    if with_ls:
        assert ls.n_reward_calls == 3 * 6


def test_paper_protocol_errors_and_config_wiring():
    from gfn.config import RunConfig
    from gfn.conditioning import apply_run_flags
    from gfn.local_search import PaperRounds
    from gfn.replay import RewardPrioritizedReplay
    from gfn import Trainer, TrainerConfig
    with pytest.raises(ValueError, match="multiple of I \\+ 1 = 8"):
        PaperRounds(n_calls=30, local_search=LocalSearch(3, 7))
    with pytest.raises(ValueError, match="train_on"):
        PaperRounds(train_on="accepted")
    env = HyperGrid(2, 4)
    obj = get_objective("tb")
    trainer = Trainer(env, obj.build_model(env, hidden=8, n_layers=1), obj, TrainerConfig(batch_size=4))
    cfg = RunConfig(local_search=[2, 3], local_search_protocol="paper", ls_calls_per_round=8, ls_accept="barker",
                    batch_size=4)
    ext = apply_run_flags(cfg, trainer)
    assert isinstance(trainer.batch_source, PaperRounds) and trainer.batch_source.m == 2
    assert trainer.batch_source.local_search is ext.local_search and not trainer.batch_hooks
    assert isinstance(trainer.replay, RewardPrioritizedReplay)
    trainer.train(12)
    assert trainer.batch_source.n_reward_calls == 16 and ext.metrics(trainer)["ls_reward_calls"] == 12
    fifo = Trainer(env, obj.build_model(env, hidden=8, n_layers=1), obj,
                   TrainerConfig(batch_size=4, replay_capacity=10))
    with pytest.raises(ValueError, match="prioritized"):
        apply_run_flags(cfg, fifo)


def test_paper_benchmark_spends_whole_rounds(tmp_path, data_dir):
    import os
    import sys
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "benchmarks"))
    import local_search_modes as bench
    report = bench.main(["--protocol", "paper", "--tasks", "tfbind8", "--seeds", "0", "--budget", "96",
                         "--hidden", "16", "--record-every", "32", "--steps-per-batch", "1",
                         "--data-dir", str(data_dir), "--out", str(tmp_path / "lsp")])
    s = report["setting"]
    assert (s["k"], s["mdp"], s["lr"], s["epsilon"]) == (3, "prepend_append", 1e-4, 0.01)
    by_method = {r["method"]: r for r in report["runs"]}
    assert set(by_method) == {"tb", "tb+ls"}
    assert by_method["tb+ls"]["batch_size"] == 4 and by_method["tb"]["batch_size"] == 32
    for r in by_method.values():
        assert r["reward_calls"] == 96 and r["rounds"] == 3 and r["iterations"] == 6
    assert (tmp_path / "lsp.json").is_file() and (tmp_path / "lsp.png").is_file()
