"""Near-duplicate clusters over workers: the rounds of `corpus.components` wired as Beam GroupByKeys.

No step holds all verified pairs: every half-round groups the current edges by node, so a worker
holds the neighbours of one node at a time. A Beam graph is fixed before it runs, so the rounds are
unrolled up to a cap (`corpus.components.rounds_for`); a last GroupByKey checks that the edges
have become stars and fails the job (one line) if the cap was too small, before any shard is
written. See `corpus.components` for how rounds and shuffle volume grow with the corpus.
"""

from __future__ import annotations

import apache_beam as beam

from corpus.components import (
    both_directions,
    large_star,
    larger_end_first,
    node_is_settled,
    small_star,
    star_roles,
)

JOB_ERROR_MARKER = "KOCPT-JOB-ERROR: "


def _kept_id(item, rounds: int):
    """(node, roles) → (node, kept id) when the node is not its cluster's smallest; fails if unsettled."""
    node, roles = item
    roles = list(roles)
    if not node_is_settled(roles):
        raise RuntimeError(
            f"{JOB_ERROR_MARKER}near-duplicate clustering did not converge in {rounds} rounds "
            f"(document {node} is not yet linked to its cluster's smallest id): the graph needs more rounds than the cap allows"
        )
    for role, other in roles:
        if role == "parent":
            yield (node, other)
            return


class ConnectedComponents(beam.PTransform):
    """Verified pairs (a, b) → (id, kept id) for every document that is not its cluster's smallest."""

    def __init__(self, rounds: int):
        super().__init__()
        self.rounds = rounds

    def expand(self, pairs):
        edges = pairs | "Canonical" >> beam.Map(larger_end_first)
        for number in range(self.rounds):
            edges = (
                edges
                | f"LargeStarKeys{number}" >> beam.FlatMap(both_directions)
                | f"LargeStarGroup{number}" >> beam.GroupByKey()
                | f"LargeStar{number}" >> beam.FlatMapTuple(large_star)
                | f"SmallStarKeys{number}" >> beam.Map(larger_end_first)
                | f"SmallStarGroup{number}" >> beam.GroupByKey()
                | f"SmallStar{number}" >> beam.FlatMapTuple(small_star)
            )
        return (
            edges
            | "StarRoles" >> beam.FlatMap(star_roles)
            | "GroupRoles" >> beam.GroupByKey()
            | "CheckAndKeep" >> beam.FlatMap(_kept_id, rounds=self.rounds)
        )
