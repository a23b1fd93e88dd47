"""Molecular graph states to RDKit molecules (used by the environment and by the rewards, so
neither imports the other for it)."""

from __future__ import annotations

from gfn.graphs import GraphBatch


def graphs_to_mols(states: GraphBatch, sanitize: bool = True) -> list:
    """RDKit molecules of molecular graph states (atomic numbers, bond orders); ``None`` where
    sanitisation fails or the graph is empty."""
    from rdkit import Chem, rdBase
    _quiet = rdBase.BlockLogs()  # noqa: F841  (sanitisation failures are reported as None)
    bt = {1: Chem.BondType.SINGLE, 2: Chem.BondType.DOUBLE, 3: Chem.BondType.TRIPLE}
    x = states.x.tolist()
    ei = states.edge_index.tolist()
    ea = states.edge_attr.tolist()
    nptr, eptr = states.node_ptr.tolist(), states.edge_ptr.tolist()
    mols = []
    for g in range(len(states)):
        if nptr[g + 1] == nptr[g]:
            mols.append(None)
            continue
        m = Chem.RWMol()
        for z in x[nptr[g]:nptr[g + 1]]:
            atom = Chem.Atom(int(z))
            m.AddAtom(atom)
        for k in range(eptr[g], eptr[g + 1]):
            m.AddBond(int(ei[0][k]), int(ei[1][k]), bt[int(ea[k])])
        mol = m.GetMol()
        if sanitize:
            try:
                Chem.SanitizeMol(mol)
            except Exception:  # RDKit raises several sanitisation exception types
                mol = None
        mols.append(mol)
    return mols
