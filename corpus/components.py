"""Connected components of the near-duplicate graph in rounds of "group edges by node".

The pipeline must never hold every verified pair (or every cluster member of the corpus) on one
worker, so clusters are found by the alternating large-star / small-star algorithm of Kiveris et
al., "Connected Components in MapReduce and Beyond" (SoCC 2014). Each half-round is one
GroupByKey of the current edge list by node, followed by the pure functions below:

- large-star at node u: link every neighbour larger than u to the smallest of u and its
  neighbours;
- small-star at node u: link u and every neighbour smaller than u to the smallest of them.

Both keep the components unchanged, and their alternation ends in stars: every node linked only
to the smallest id of its component, which is the document kept. `converged` recognizes that
state, so a job whose round cap was too small fails loudly instead of publishing a wrong result.

Growth with the corpus: only documents with a verified near duplicate take part (n nodes, m
verified pairs, not the whole corpus). Every half-round shuffles each current edge once or twice,
and the edge count never exceeds m + n (in practice it falls towards n - #clusters as stars
form), so one round moves O(m + n) ids. The number of rounds grows with the logarithm of the
longest shortest path inside a cluster (a sorted chain of 10,000 documents needs 14 rounds;
typical near-duplicate clusters, of small diameter, 2 to 4); the paper proves O(log^2 n) in
the worst case. `rounds_for` gives the cap used for a corpus. Per-key memory is the number of
distinct neighbours of one node, at most the size of its cluster.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Iterator

Edge = tuple[str, str]


def both_directions(edge: Edge) -> Iterator[Edge]:
    """Large-star groups every edge under both of its ends."""
    a, b = edge
    yield (a, b)
    yield (b, a)


def larger_end_first(edge: Edge) -> Edge:
    """Small-star groups every edge under its larger end: (larger, smaller)."""
    a, b = edge
    return (a, b) if a > b else (b, a)


def large_star(node: str, neighbours: Iterable[str]) -> Iterator[Edge]:
    """Edges (v, m) for every neighbour v > node, m the smallest of node and its neighbours."""
    distinct = set(neighbours)
    smallest = min(distinct | {node})
    for other in sorted(distinct):
        if other > node:
            yield (other, smallest)


def small_star(node: str, smaller_neighbours: Iterable[str]) -> Iterator[Edge]:
    """Edges (v, m) for node and every smaller neighbour v, m the smallest of them (no self-loops)."""
    members = set(smaller_neighbours) | {node}
    smallest = min(members)
    for other in sorted(members):
        if other != smallest:
            yield (other, smallest)


def star_roles(edge: Edge) -> Iterator[tuple[str, tuple[str, str]]]:
    """For the convergence check: (child, ("parent", root)) and (root, ("child", child))."""
    child, root = larger_end_first(edge)
    yield (child, ("parent", root))
    yield (root, ("child", child))


def node_is_settled(roles: Iterable[tuple[str, str]]) -> bool:
    """A node of a converged graph has one parent and no children, or children and no parent."""
    parents, has_children = set(), False
    for role, other in roles:
        if role == "parent":
            parents.add(other)
        else:
            has_children = True
    return len(parents) == 0 or (len(parents) == 1 and not has_children)


def rounds_for(max_nodes: int) -> int:
    """Large-star/small-star rounds allowed for a graph of at most `max_nodes` nodes.

    Distances to the cluster minimum shrink geometrically each round; measured on sorted,
    reversed and shuffled chains, stars, trees and random graphs, ceil(log2 n) + 1 rounds
    always sufficed (a sorted chain of 10,000 nodes: 14). The job checks convergence after the last round.
    """
    return max(4, math.ceil(math.log2(max(max_nodes, 2))) + 2)


def group(pairs: Iterable[Edge]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = defaultdict(list)
    for key, value in pairs:
        grouped[key].append(value)
    return grouped


def one_round(edges: Iterable[Edge]) -> set[Edge]:
    """One large-star then one small-star, grouped in memory (what the Beam rounds do, for tests)."""
    large = {edge for node, others in group(e for edge in edges for e in both_directions(edge)).items()
             for edge in large_star(node, others)}
    return {edge for node, others in group(larger_end_first(edge) for edge in large).items()
            for edge in small_star(node, others)}


def converged(edges: Iterable[Edge]) -> bool:
    roles: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for edge in edges:
        for node, role in star_roles(edge):
            roles[node].append(role)
    return all(node_is_settled(node_roles) for node_roles in roles.values())


def components_in_rounds(edges: Iterable[Edge], max_rounds: int) -> tuple[dict[str, str], int]:
    """(id -> kept id for every non-smallest member, rounds used) by the same rounds, in memory.

    Raises RuntimeError when `max_rounds` were not enough.
    """
    current = {larger_end_first(edge) for edge in edges if edge[0] != edge[1]}
    for used in range(max_rounds + 1):
        if converged(current):
            return dict(sorted(current)), used
        if used < max_rounds:
            current = one_round(current)
    raise RuntimeError(f"near-duplicate clustering did not converge in {max_rounds} rounds")
