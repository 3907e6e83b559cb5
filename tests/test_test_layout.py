"""The tests' own layering: a test module imports no other test module (pytest may collect, skip or run a test file
on its own, and importing one runs its module code and shares its names by accident). What several test files share
lives in a helper module (tests/*_helpers.py, original_ports.py, analytic_flops.py) or a conftest.py fixture."""

from layering_helpers import TESTS, imported_names

TEST_MODULES = {path.stem for path in TESTS.glob("test_*.py")}


def test_no_test_module_imports_another():
  wrong = [f"{path.name} imports {name}" for path in sorted(TESTS.glob("*.py"))
           for name in sorted(imported_names(path.read_text()) & TEST_MODULES)]
  assert wrong == []


def test_the_walk_sees_every_import_form():
  source = ("import test_a\nimport test_b.c as d\nfrom test_e import f\nfrom .test_g import h\n"
            "def f():\n  from test_i import j\n")
  assert imported_names(source) == {"test_a", "test_b", "test_e", "test_i"}
