"""Shared by tests that run bad inputs through the CLI: the one error line, and what was on disk before."""

from pathlib import Path

from bert_jax import cli


def snapshot(root: Path) -> dict:
  """Every file below root with its size and mtime."""
  return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
          for p in sorted(root.rglob("*")) if p.is_file()}


def error_line(capsys, argv: list[str], status: int = 2, alone: bool = True) -> str:
  """The one `bert-jax: error:` line of a failed command, the last on stderr; with `alone`, the only line."""
  capsys.readouterr()
  assert cli.main(argv) == status
  err = capsys.readouterr().err
  assert "Traceback" not in err
  errors = [line for line in err.splitlines() if line.startswith("bert-jax: error:")]
  assert len(errors) == 1 and err.rstrip("\n").endswith(errors[0]), err
  if alone:
    assert err.count("\n") == 1, err
  return errors[0]
