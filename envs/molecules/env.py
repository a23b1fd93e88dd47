"""Atom-by-atom molecule building on :class:`~gfn.graphs.GraphBatch` states.

State: a molecular graph whose nodes hold atomic numbers (long ``x``) in the order they were
added and whose edges ``(i, j)``, ``i < j``, hold bond orders 1..3 (long ``edge_attr``).
Hydrogens are implicit (RDKit fills each atom's remaining valence).  Node order is part of
the state: every node ``j >= 1`` has a neighbour ``i < j`` (it was attached to one), which
keeps the state space a DAG in which ``backward_step`` exactly inverts ``step``.

Forward actions (flat codes, see :class:`gfn.graphs.ActionGroup`), ``E`` elements, ``M``
max atoms, ``nb`` bond orders, ``P = M (M - 1) / 2`` node pairs ``(i, j)`` ordered by ``j``:

* ``first_atom`` [graph, E]: place the first atom (empty graph only);
* ``attach`` [node, E * nb]: add a new atom of element ``e`` bonded to node ``i`` with order ``b``;
* ``bond`` [pair, 1]: raise the order of bond ``(i, j)`` by one (0 -> 1 closes a ring);
* ``stop`` [graph, 1]: exit (the last code, as :class:`~gfn.env.DiscreteEnv` requires).

Backward actions: ``remove_last`` [graph, 1] deletes the newest atom when it is a leaf;
``unbond`` [pair, 1] lowers a bond order by one (removing a single bond only when node
``j`` keeps another neighbour ``< j``).

Valence masks: a bond may only use free valence of both atoms (C 4, N 3, O 2, F 1, S 2 or
6 with ``hypervalent``, halogens 1, P 3 or 5), so every state is a neutral molecule that
RDKit sanitises; no ring smaller than ``min_ring_size`` can close (the girth condition is
inherited by every parent, so the masks stay consistent backward).
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch

from gfn.env import DiscreteEnv, EnvError, Reward
from gfn.envs.molecules.convert import graphs_to_mols
from gfn.graphs import ActionSpec, GraphBatch, segment_arange
from gfn.ops import lengths_to_ptr

#: atomic number and default maximum valence of the supported elements
ELEMENTS = {"C": (6, 4), "N": (7, 3), "O": (8, 2), "F": (9, 1), "P": (15, 3), "S": (16, 2), "Cl": (17, 1),
            "Br": (35, 1), "I": (53, 1)}
HYPERVALENT = {"S": 6, "P": 5}


class MoleculeEnv(DiscreteEnv):
    """Atom-by-atom molecular graph construction with valence-aware masks (see module docstring)."""

    def __init__(self, atoms: Sequence[str] = ("C", "N", "O", "F", "S"), max_atoms: int = 20, min_atoms: int = 1,
                 max_bond_order: int = 3, min_ring_size: int = 5, hypervalent: bool = False,
                 reward: Optional[Reward] = None, reward_kind: str = "qed_sa", reward_exponent: float = 1.0,
                 device: str | torch.device = "cpu"):
        atoms = list(atoms)
        unknown = [a for a in atoms if a not in ELEMENTS]
        if unknown or not atoms or len(set(atoms)) != len(atoms):
            raise ValueError(f"atoms must be distinct elements from {sorted(ELEMENTS)}, got {atoms}")
        if max_atoms < 1 or not 1 <= min_atoms <= max_atoms:
            raise ValueError(f"need 1 <= min_atoms <= max_atoms, got min_atoms={min_atoms}, max_atoms={max_atoms}")
        if max_bond_order not in (1, 2, 3):
            raise ValueError(f"max_bond_order must be 1, 2 or 3, got {max_bond_order}")
        if min_ring_size < 3:
            raise ValueError(f"min_ring_size must be >= 3, got {min_ring_size}")
        self.atoms, self.max_atoms, self.min_atoms = atoms, int(max_atoms), int(min_atoms)
        self.n_bond, self.min_ring_size, self.hypervalent = int(max_bond_order), int(min_ring_size), bool(hypervalent)
        e, m, nb = len(atoms), self.max_atoms, self.n_bond
        self.n_pairs = m * (m - 1) // 2
        self.node_k = e * nb
        self.off_attach = e
        self.off_bond = e + m * self.node_k
        n_actions = self.off_bond + self.n_pairs + 1
        if reward is None:
            from gfn.envs.molecules.rewards import MoleculeReward
            reward = MoleculeReward(reward_kind, exponent=reward_exponent)
        super().__init__(n_actions=n_actions, n_backward_actions=1 + self.n_pairs, reward=reward, device=device)
        dev = self.device
        self.atomic_numbers = torch.tensor([ELEMENTS[a][0] for a in atoms], device=dev)
        val = [HYPERVALENT.get(a, ELEMENTS[a][1]) if hypervalent else ELEMENTS[a][1] for a in atoms]
        self.valences = torch.tensor(val, device=dev)
        # atomic number -> element index (-1: not in the alphabet)
        self._z_to_elem = torch.full((128,), -1, dtype=torch.long, device=dev)
        self._z_to_elem[self.atomic_numbers] = torch.arange(e, device=dev)
        jj, ii = [], []
        for j in range(1, m):
            for i in range(j):
                ii.append(i)
                jj.append(j)
        self.pair_i = torch.tensor(ii, dtype=torch.long, device=dev)
        self.pair_j = torch.tensor(jj, dtype=torch.long, device=dev)
        self.feature_dims = (e + 5 + 5 + 2, nb, 5)

    # ------------------------------------------------------------------ helpers
    def _dense(self, s: GraphBatch):
        """Padded per-graph views: n [B], element [B, M] (-1 pad), bond orders A [B, M, M], free valence [B, M]."""
        b, m = len(s), self.max_atoms
        n = s.n_nodes
        if s.num_nodes and int(n.max()) > m:
            raise EnvError(f"MoleculeEnv: a state has {int(n.max())} atoms > max_atoms={m}")
        elem = torch.full((b, m), -1, dtype=torch.long, device=s.device)
        elem[s.node_batch, s.node_local] = self._z_to_elem[s.x]
        a = torch.zeros(b, m, m, dtype=torch.long, device=s.device)
        eb = s.edge_batch
        a[eb, s.edge_index[0], s.edge_index[1]] = s.edge_attr
        a[eb, s.edge_index[1], s.edge_index[0]] = s.edge_attr
        cap = torch.where(elem >= 0, self.valences[elem.clamp(min=0)], torch.zeros_like(elem))
        free = cap - a.sum(-1)
        return n, elem, a, free

    def _masks(self, s: GraphBatch, backward: bool):
        n, elem, a, free = self._dense(s)
        b, m = len(s), self.max_atoms
        pi, pj = self.pair_i, self.pair_j
        aij = a[:, pi, pj]
        pexists = pj.unsqueeze(0) < n.unsqueeze(1)
        if backward:
            last = (n - 1).clamp(min=0)
            deg_last = (a[torch.arange(b, device=s.device), last] > 0).sum(-1)
            remove_last = (n == 1) | ((n > 1) & (deg_last == 1))
            lower = torch.tril(torch.ones(m, m, dtype=torch.bool, device=s.device), -1)
            low_count = ((a > 0) & lower).sum(-1)
            unbond = pexists & ((aij >= 2) | ((aij == 1) & (low_count[:, pj] >= 2)))
            return n, aij, remove_last.unsqueeze(1), unbond
        exists = torch.arange(m, device=s.device).unsqueeze(0) < n.unsqueeze(1)
        orders = torch.arange(1, self.n_bond + 1, device=s.device)
        attach = (exists & (n < m).unsqueeze(1)).view(b, m, 1, 1) \
            & (free.view(b, m, 1, 1) >= orders) & (self.valences.view(1, 1, -1, 1) >= orders)
        pair_ok = pexists & (free[:, pi] >= 1) & (free[:, pj] >= 1) & (aij < self.n_bond)
        if self.min_ring_size > 3:
            adj = (a > 0).float()
            reach = torch.eye(m, device=s.device).expand(b, m, m)
            for _ in range(self.min_ring_size - 2):
                reach = (reach + torch.bmm(reach, adj)).clamp(max=1.0)
            pair_ok &= (aij > 0) | (reach[:, pi, pj] == 0)
        first = (n == 0).unsqueeze(1).expand(b, len(self.atoms))
        attach = attach.reshape(b, m, self.node_k)
        # stop from min_atoms on, or earlier when the molecule is saturated (no dead ends)
        stuck = (n >= 1) & ~attach.flatten(1).any(1) & ~pair_ok.any(1)
        stop = ((n >= self.min_atoms) | stuck).unsqueeze(1)
        return n, aij, first, attach, pair_ok, stop

    # ------------------------------------------------------------------ contract
    def initial_states(self, n: int) -> GraphBatch:
        """``n`` empty molecules."""
        return GraphBatch.empty(n, torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long), self.device)

    def forward_mask(self, states: GraphBatch) -> torch.Tensor:
        """Dense [N, n_actions] mask: first atom, attach (node, element, order), bond pair, stop."""
        n, aij, first, attach, pair_ok, stop = self._masks(states, backward=False)
        return torch.cat([first, attach.reshape(len(states), self.max_atoms * self.node_k), pair_ok, stop], 1)

    def backward_mask(self, states: GraphBatch) -> torch.Tensor:
        """Dense [N, 1 + P] mask: remove the newest (leaf) atom, lower a bond order."""
        n, aij, remove_last, unbond = self._masks(states, backward=True)
        return torch.cat([remove_last, unbond], 1)

    def is_initial(self, states: GraphBatch) -> torch.Tensor:
        """True for the empty molecule."""
        return states.n_nodes == 0

    def _decode_pairs(self, p: torch.Tensor):
        return self.pair_i[p], self.pair_j[p]

    def step(self, states: GraphBatch, actions: torch.Tensor) -> GraphBatch:
        """Add an atom or raise a bond order (no validation; see :meth:`apply`)."""
        if bool((actions >= self.off_bond + self.n_pairs).any()) or bool((actions < 0).any()):
            raise EnvError("MoleculeEnv.step: got the stop action or an out-of-range code")
        g = torch.arange(len(states), device=states.device)
        n = states.n_nodes
        is_first = actions < self.off_attach
        is_attach = (actions >= self.off_attach) & (actions < self.off_bond)
        is_bond = actions >= self.off_bond
        rel = (actions - self.off_attach).clamp(min=0)
        tgt, rem = rel // self.node_k, rel % self.node_k
        el = torch.where(is_first, actions, rem // self.n_bond)
        order = rem % self.n_bond + 1
        new_node = is_first | is_attach
        # existing bonds whose order goes up
        p = (actions - self.off_bond).clamp(min=0, max=self.n_pairs - 1)
        bi, bj = self._decode_pairs(p)
        pos = states.find_edges(g[is_bond], bi[is_bond], bj[is_bond])
        existing = pos >= 0
        out = states
        if bool(existing.any()):
            ea = states.edge_attr.clone()
            ea[pos[existing]] += 1
            out = states.with_(edge_attr=ea)
        eg = torch.cat([g[is_attach], g[is_bond][~existing]])
        ei = torch.stack([torch.cat([tgt[is_attach], bi[is_bond][~existing]]),
                          torch.cat([n[is_attach], bj[is_bond][~existing]])])
        eattr = torch.cat([order[is_attach], torch.ones(int((~existing).sum()), dtype=torch.long, device=states.device)])
        return out.add(node_graph=g[new_node], node_x=self.atomic_numbers[el[new_node]],
                       edge_graph=eg, edge_index=ei, edge_attr=eattr)

    def backward_step(self, states: GraphBatch, actions: torch.Tensor) -> GraphBatch:
        """Remove the newest atom (code 0) or lower the order of bond pair ``code - 1``."""
        g = torch.arange(len(states), device=states.device)
        rm = actions == 0
        p = (actions - 1).clamp(min=0)
        bi, bj = self._decode_pairs(p)
        sel = ~rm
        pos = states.find_edges(g[sel], bi[sel], bj[sel])
        if bool((pos < 0).any()):
            raise EnvError("MoleculeEnv.backward_step: lowering the order of a bond that does not exist")
        ea = states.edge_attr.clone()
        ea[pos] -= 1
        edge_keep = ea > 0
        node_keep = None
        if bool(rm.any()):
            node_keep = torch.ones(states.num_nodes, dtype=torch.bool, device=states.device)
            node_keep[states.node_ptr[1:][rm] - 1] = False
        return states.with_(edge_attr=ea).remove(node_keep=node_keep, edge_keep=edge_keep)

    def backward_action(self, states: GraphBatch, actions: torch.Tensor) -> torch.Tensor:
        """Backward code at the child that undoes forward ``actions``."""
        return torch.where(actions >= self.off_bond, actions - self.off_bond + 1, torch.zeros_like(actions))

    def forward_action(self, states: GraphBatch, actions: torch.Tensor) -> torch.Tensor:
        """Forward code at the parent that redoes backward ``actions`` taken at ``states``."""
        n, elem, a, _ = self._dense(states)
        g = torch.arange(len(states), device=states.device)
        last = (n - 1).clamp(min=0)
        row = a[g, last]  # bonds of the newest atom: it is a leaf where remove_last is allowed
        nbr = row.argmax(-1)
        order = row[g, nbr].clamp(min=1)
        e_last = elem[g, last].clamp(min=0)
        add = torch.where(n <= 1, e_last, self.off_attach + nbr * self.node_k + e_last * self.n_bond + order - 1)
        return torch.where(actions == 0, add, actions - 1 + self.off_bond)

    # ------------------------------------------------------------------ policy interface
    def action_groups(self, backward: bool = False) -> list[tuple[str, str, int]]:
        """Static description ``(name, level, K)`` of the action groups (for building heads)."""
        if backward:
            return [("remove_last", "graph", 1), ("unbond", "pair", 1)]
        return [("first_atom", "graph", len(self.atoms)), ("attach", "node", self.node_k), ("bond", "pair", 1),
                ("stop", "graph", 1)]

    def _pair_rows(self, s: GraphBatch, n: torch.Tensor):
        counts = n * (n - 1) // 2
        ptr = lengths_to_ptr(counts)
        p = segment_arange(ptr)
        gid = torch.repeat_interleave(torch.arange(len(s), device=s.device), counts, output_size=p.numel())
        base = s.node_ptr[:-1][gid]
        return ptr, p, gid, torch.stack([base + self.pair_i[p], base + self.pair_j[p]])

    def action_spec(self, states: GraphBatch, backward: bool = False) -> list[ActionSpec]:
        """Masks and row layout of every action group at ``states`` (for graph policies)."""
        b = len(states)
        gptr = torch.arange(b + 1, device=states.device)
        if backward:
            n, aij, remove_last, unbond = self._masks(states, backward=True)
            pptr, p, gid, pairs = self._pair_rows(states, n)
            return [ActionSpec("remove_last", "graph", remove_last, gptr, 0, 1),
                    ActionSpec("unbond", "pair", unbond[gid, p].unsqueeze(1), pptr, 1, self.n_pairs, pairs, aij[gid, p])]
        n, aij, first, attach, pair_ok, stop = self._masks(states, backward=False)
        pptr, p, gid, pairs = self._pair_rows(states, n)
        return [ActionSpec("first_atom", "graph", first, gptr, 0, 1),
                ActionSpec("attach", "node", attach[states.node_batch, states.node_local], states.node_ptr,
                           self.off_attach, self.max_atoms),
                ActionSpec("bond", "pair", pair_ok[gid, p].unsqueeze(1), pptr, self.off_bond, self.n_pairs, pairs, aij[gid, p]),
                ActionSpec("stop", "graph", stop, gptr, self.exit_action, 1)]

    def featurize(self, states: GraphBatch) -> GraphBatch:
        """Float features: atoms (element, free valence, degree, newest, has multiple bond),
        bonds (one-hot order) and graph (size, emptiness, fullness, ring count, bonds)."""
        s = states
        nn_ = s.num_nodes
        elem = self._z_to_elem[s.x]
        gei = s.global_edge_index
        ea = s.edge_attr
        used = torch.zeros(nn_, dtype=torch.long, device=s.device).index_add_(0, gei[0], ea).index_add_(0, gei[1], ea)
        deg = torch.zeros(nn_, dtype=torch.long, device=s.device).index_add_(0, gei[0], torch.ones_like(ea)) \
            .index_add_(0, gei[1], torch.ones_like(ea))
        multi = torch.zeros(nn_, dtype=torch.long, device=s.device).index_add_(0, gei[0], (ea > 1).long()) \
            .index_add_(0, gei[1], (ea > 1).long())
        free = (self.valences[elem] - used).clamp(0, 4)
        newest = torch.zeros(nn_, dtype=torch.bool, device=s.device)
        n = s.n_nodes
        newest[(s.node_ptr[1:] - 1)[n > 0]] = True
        oh = torch.nn.functional.one_hot
        x = torch.cat([oh(elem, len(self.atoms)), oh(free, 5), oh(deg.clamp(max=4), 5), newest.unsqueeze(1),
                       (multi > 0).unsqueeze(1)], 1).float()
        e = oh(ea - 1, self.n_bond).float()
        m = float(self.max_atoms)
        rings = (s.n_edges - n + 1).clamp(min=0).float()
        u = torch.stack([n.float() / m, (n == 0).float(), (n >= self.max_atoms).float(), rings / 4.0,
                         s.n_edges.float() / m], 1)
        return GraphBatch(x, s.edge_index, e, s.node_ptr, s.edge_ptr, u)

    def build_gflownet(self, flow: bool = False, hidden: int = 128, n_layers: int = 4, **kw):
        """GNN GFlowNet for this environment (used by ``Objective.build_model``)."""
        from gfn.gnn import build_graph_gflownet
        return build_graph_gflownet(self, hidden=hidden, n_layers=n_layers, flow=flow, **kw)

    # ------------------------------------------------------------------ checks and conversion
    def state_violations(self, states: GraphBatch) -> list[str]:
        """Contract checks for ``gfn.check_env``: valence, bond orders, construction order, atoms."""
        out = []
        n, elem, a, free = self._dense(states)
        if bool((elem[torch.arange(self.max_atoms, device=states.device).unsqueeze(0) < n.unsqueeze(1)] < 0).any()):
            out.append("a state holds an atom outside the element alphabet")
        if bool((free < 0).any()):
            i = int((free < 0).any(-1).nonzero()[0, 0])
            out.append(f"valence exceeded in {states.describe(i)}")
        if states.edge_attr.numel() and (int(states.edge_attr.min()) < 1 or int(states.edge_attr.max()) > self.n_bond):
            out.append("a bond order is outside 1..max_bond_order")
        if states.edge_index.numel() and bool((states.edge_index[0] >= states.edge_index[1]).any()):
            out.append("an edge is not stored as (i, j) with i < j")
        lower = torch.tril(torch.ones(self.max_atoms, self.max_atoms, dtype=torch.bool, device=states.device), -1)
        low_count = ((a > 0) & lower).sum(-1)
        idx = torch.arange(self.max_atoms, device=states.device).unsqueeze(0)
        orphan = (idx >= 1) & (idx < n.unsqueeze(1)) & (low_count == 0)
        if bool(orphan.any()):
            i = int(orphan.any(-1).nonzero()[0, 0])
            out.append(f"an atom has no earlier neighbour (not reachable by construction): {states.describe(i)}")
        return out

    def to_mols(self, states: GraphBatch, sanitize: bool = True) -> list:
        """RDKit molecules of the states (``None`` where sanitisation fails)."""
        return graphs_to_mols(states, sanitize)

    def to_smiles(self, states: GraphBatch) -> list[Optional[str]]:
        """Canonical SMILES of the states (``None`` where sanitisation fails)."""
        from rdkit import Chem
        return [None if m is None else Chem.MolToSmiles(m) for m in self.to_mols(states)]
