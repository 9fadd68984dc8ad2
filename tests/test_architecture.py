"""The layering holds: no import cycle between tfprune's modules, and no isinstance of a
specific Keras layer type outside tfprune/handlers (the handlers own every per-type fact).
The layer contracts themselves are checked by `lint-imports` (setup.cfg), which
scripts/test.sh runs."""

import re
from pathlib import Path

import grimp

PACKAGE = Path(__file__).resolve().parents[1] / "tfprune"
#: keras.layers types the graph code may still test for.
GENERIC_TYPES = {"Layer", "InputLayer"}


def _cycles(graph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []
    counter = 0
    for root in sorted(graph.modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(
                        graph.find_modules_directly_imported_by(child)))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_import_cycle_between_modules():
    graph = grimp.build_graph("tfprune", exclude_type_checking_imports=True)
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle():
    class Graph:
        modules = {"a", "b", "c"}

        @staticmethod
        def find_modules_directly_imported_by(module):
            return {"a": {"b"}, "b": {"a"}, "c": {"a"}}[module]

    assert _cycles(Graph()) == [["a", "b"]]


def test_no_isinstance_of_a_specific_layer_type_outside_the_handlers():
    pattern = re.compile(r"isinstance\([^)]*keras\.layers\.(\w+)")
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if "handlers" in path.relative_to(PACKAGE).parts:
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            for name in pattern.findall(line):
                if name not in GENERIC_TYPES:
                    offenders.append(f"{path.relative_to(PACKAGE)}:{number}: {name}")
    assert offenders == []
