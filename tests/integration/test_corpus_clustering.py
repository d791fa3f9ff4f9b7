"""Near-duplicate clusters over workers (corpus/components.py, pipelines/clustering.py) against a
plain union-find (corpus.minhash.connected_components): the same result exactly, on every shape."""

from __future__ import annotations

import random

import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that, equal_to

from corpus.components import (
    components_in_rounds,
    converged,
    large_star,
    one_round,
    rounds_for,
    small_star,
)
from corpus.minhash import connected_components
from pipelines.clustering import JOB_ERROR_MARKER, ConnectedComponents
from pipelines.runner import pipeline_options


def ids(count: int, prefix: str = "d") -> list[str]:
    return [f"{prefix}{index:06d}" for index in range(count)]


def chain(nodes: list[str]) -> list[tuple[str, str]]:
    return list(zip(nodes, nodes[1:]))


def shuffled(items: list, seed: int = 7) -> list:
    items = list(items)
    random.Random(seed).shuffle(items)
    return items


def small_clusters(clusters: int, seed: int = 3) -> list[tuple[str, str]]:
    """Many clusters of 2 to 6 documents, each wired at random (trees, triangles, pairs)."""
    rng, edges = random.Random(seed), []
    for cluster in range(clusters):
        members = ids(rng.randint(2, 6), prefix=f"c{cluster:05d}-")
        rng.shuffle(members)
        edges += [(members[i], members[rng.randrange(i)]) for i in range(1, len(members))]
        if len(members) > 2 and rng.random() < 0.3:
            edges.append((members[0], members[-1]))
    return edges


GRAPHS = {
    "sorted chain of 10,000": chain(ids(10_000)),
    "reversed chain of 10,000": chain(ids(10_000)[::-1]),
    "shuffled chain of 10,000": chain(shuffled(ids(10_000))),
    "star of 5,000 around the largest id": [(center, leaf) for center in ["z"] for leaf in ids(5_000)],
    "star of 5,000 around the smallest id": [("a", leaf) for leaf in ids(5_000)],
    "3,000 small clusters": small_clusters(3_000),
    "random graph": [(f"r{random.Random(i).randrange(3000):05d}", f"r{random.Random(-i).randrange(3000):05d}")
                     for i in range(3000)],
}


@pytest.mark.parametrize("name", list(GRAPHS))
def test_rounds_equal_union_find(name):
    edges = [edge for edge in GRAPHS[name] if edge[0] != edge[1]]
    nodes = {node for edge in edges for node in edge}
    result, used = components_in_rounds(edges, rounds_for(len(nodes)))
    assert result == connected_components(edges)
    assert used <= rounds_for(len(nodes))


def test_star_steps_and_convergence():
    # Large-star links every larger neighbour to the smallest of the neighbourhood.
    assert list(large_star("c", ["d", "a", "e", "d"])) == [("d", "a"), ("e", "a")]
    assert list(small_star("e", ["c", "b"])) == [("c", "b"), ("e", "b")]
    assert converged([("b", "a"), ("c", "a"), ("y", "x")])
    assert not converged([("b", "a"), ("c", "b")])  # b is both a child and a parent
    assert not converged([("c", "a"), ("c", "b")])  # c has two parents
    # One round halves the distances of a path to its smallest id.
    assert one_round({("b", "a"), ("c", "b"), ("d", "c")}) == {("b", "a"), ("c", "a"), ("d", "b")}


def test_too_few_rounds_fail_loudly():
    with pytest.raises(RuntimeError, match="did not converge in 3 rounds"):
        components_in_rounds(chain(ids(1000)), 3)


def run_clusters(edges: list[tuple[str, str]], rounds: int, expected: dict[str, str]) -> None:
    with beam.Pipeline(options=pipeline_options(["--direct_num_workers=2"])) as pipeline:
        kept = pipeline | beam.Create(edges) | ConnectedComponents(rounds)
        assert_that(kept, equal_to(sorted(expected.items())))


@pytest.mark.slow
def test_beam_rounds_equal_union_find_on_a_chain_a_star_and_small_clusters():
    edges = (GRAPHS["shuffled chain of 10,000"] + GRAPHS["star of 5,000 around the largest id"]
             + GRAPHS["3,000 small clusters"])
    nodes = {node for edge in edges for node in edge}
    run_clusters(edges, rounds_for(len(nodes)), connected_components(edges))


@pytest.mark.slow
def test_beam_rounds_fail_the_job_when_the_cap_is_too_small():
    edges = chain(ids(1000))
    with pytest.raises(Exception, match=JOB_ERROR_MARKER + "near-duplicate clustering did not converge in 3 rounds"):
        run_clusters(edges, 3, connected_components(edges))
