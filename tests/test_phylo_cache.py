"""PhyloTree's cached pairwise merge costs and the encoder's row dedupe: both must equal the
direct computation (they are speed-ups, not approximations)."""

from __future__ import annotations

import torch

from gfn.envs.phylo import PhyloTree, load_alignment
from gfn.envs.phylo.forest import Forest
from gfn.envs.phylo.policy import _unique_rows

SEQS = ["ACGTAC-TAAGT", "ACGTTCGTANCA", "AGGTTC-AAAGT", "TCGAACGTA?TT", "ACCTAAGTGAGA", "GCGTAC-TCACA",
        "ACGAAC-TCAGT"]


def toy_env(tmp_path, **kw):
    path = tmp_path / "toy.fasta"
    path.write_text("".join(f">t{i}\n{s}\n" for i, s in enumerate(SEQS)))
    return PhyloTree(alignment=load_alignment(path=str(path)), C=0.0, **kw)


def random_walk(env, k, gen):
    """Forests along k random forward walks s_0 -> complete tree, then every forest split back."""
    s = env.initial_states(k)
    seen = [s]
    for _ in range(env.n - 1):
        mask = env.forward_mask(s)[:, :-1].float()
        s = env.step(s, torch.multinomial(mask, 1, generator=gen).squeeze(1))
        seen.append(s)
    for _ in range(env.n - 2):  # backward splits rebuild the cache too
        mask = env.backward_mask(s).float()
        s = env.backward_step(s, torch.multinomial(mask, 1, generator=gen).squeeze(1))
        seen.append(s)
    return Forest.cat(seen)


def test_cached_merge_costs_equal_direct(tmp_path):
    env = toy_env(tmp_path)
    states = random_walk(env, 12, torch.Generator().manual_seed(0))
    cached, direct = env.merge_costs(states), env.merge_costs_direct(states)
    assert torch.equal(cached, direct)
    assert float(direct.max()) > 0
    # the cache is symmetric, zero on the diagonal and on empty slots
    c = states.costs
    assert torch.equal(c, c.transpose(1, 2))
    assert float(c.diagonal(dim1=1, dim2=2).abs().max()) == 0.0
    empty = states.roots < 0
    assert float(c[empty.unsqueeze(2).expand_as(c)].abs().max()) == 0.0
    # cost of a merge = the score it adds
    valid = env.forward_mask(states)[:, :-1]
    rows, acts = valid.nonzero(as_tuple=True)
    children = env.step(states.index(rows), acts)
    added = children.score.sum(-1) - states.score[rows].sum(-1)
    assert torch.equal(cached[rows, acts].double(), added)


def test_likelihood_forests_carry_no_costs(tmp_path):
    path = tmp_path / "toy.fasta"
    path.write_text("".join(f">t{i}\n{s}\n" for i, s in enumerate(SEQS[:4])))
    env = PhyloTree(alignment=load_alignment(path=str(path), gap_as_state=False), reward_kind="likelihood", n_bins=2)
    s = env.step(env.initial_states(2), torch.tensor([0, 5]))
    assert s.costs.shape == (2, 0, 0)


def test_unique_rows_is_exact():
    gen = torch.Generator().manual_seed(1)
    base = torch.randint(1, 32, (40, 13), generator=gen, dtype=torch.uint8)
    codes = base[torch.randint(0, 40, (500,), generator=gen)]
    uniq, inv = _unique_rows(codes)
    assert torch.equal(uniq[inv], codes)
    assert len(uniq) == len(torch.unique(codes, dim=0))


def test_encoder_dedupe_matches_dense_embedding(tmp_path):
    """The root embeddings equal the dense one-hot embedding of every occupied slot."""
    env = toy_env(tmp_path)
    torch.manual_seed(0)
    model = env.build_gflownet(hidden=16)
    states = random_walk(env, 6, torch.Generator().manual_seed(2))
    x = env.featurize(states)
    enc = model.trunk
    with torch.no_grad():
        h = enc(x)
        flat = x.reshape(len(states) * env.n, env.n_patterns)
        occ = flat.ne(0).any(-1)
        onehot = ((flat.long().unsqueeze(-1) & enc.bits) > 0).flatten(1).float()
        emb = torch.relu(enc.embed(onehot)) * occ.unsqueeze(-1)
        ref = emb.reshape(len(states), env.n, -1)
        w = occ.reshape(len(states), env.n).unsqueeze(-1).float()
        for block in enc.blocks:
            ctx = ((ref * w).sum(1) / w.sum(1).clamp(min=1)).unsqueeze(1).expand_as(ref)
            ref = ref + block(torch.cat([ref, ctx], -1)) * w
    assert torch.allclose(h, ref, atol=1e-5)
