"""The package's layers, measured from its imports (tests/helpers/architecture.py draws them):
no import circles, nothing imported from a higher layer, sub-packages, module and Trainer sizes,
notebooks without smoke branches, no issue numbers in code or tests."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "helpers"))
import architecture  # noqa: E402


def test_no_import_circles():
    assert architecture.circles(architecture.graph()) == []


def test_no_module_imports_from_a_higher_layer():
    assert architecture.upward(architecture.graph()) == []


def test_every_module_has_a_layer():
    for module in architecture.modules():
        architecture.layer_of(module)  # raises KeyError for a module no layer names


def test_the_checker_sees_a_circle_and_an_upward_import():
    edges = {"scope_lib.common.stats": {"scope_lib.notebook.report"},
             "scope_lib.notebook.report": {"scope_lib.common.stats"}}
    assert architecture.circles(edges) == [["scope_lib.common.stats", "scope_lib.notebook.report"]]
    assert architecture.upward(edges) == ["scope_lib.common.stats (common) -> scope_lib.notebook.report (notebook)"]


def test_at_least_three_sub_packages():
    packages = [m for m, p in architecture.modules().items() if p.name == "__init__.py" and m != "scope_lib"]
    assert len(packages) >= 3, packages


def test_no_module_over_700_lines():
    assert architecture.long_modules(700) == {}


def test_trainer_class_at_most_300_lines():
    assert architecture.class_lines("scope_lib.trainer", "Trainer") <= 300


def test_notebooks_have_no_smoke_branches():
    assert architecture.smoke_branches() == {}


def test_no_issue_numbers_in_code_or_tests():
    assert architecture.issue_numbers() == []


def test_imports_inside_functions_each_have_a_reason():
    """Imports sit at the top of files; the ones inside functions are an optional dependency, a
    start-up cost or the sandbox's inside code, as architecture.LAZY says for each."""
    assert architecture.unexplained_lazy_imports() == []
