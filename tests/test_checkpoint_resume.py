"""Exact resume of `bert-jax train` on the demo corpus (real tf.data pipeline, dropout on): a run killed with SIGKILL
after its checkpoint of step 30, then stopped by SIGTERM, then run to the end, logs the same numbers at every step
31..60 as an uninterrupted run."""

import signal
import time

from checkpoint_helpers import comparable, demo_overrides, finish, records, reference_run, start_train


def wait_for(condition, process, what: str, timeout: float = 600) -> None:
  deadline = time.monotonic() + timeout
  while not condition():
    assert process.poll() is None, f"the run ended before {what}:\n{process.communicate()[0][-3000:]}"
    assert time.monotonic() < deadline, f"timed out waiting for {what}"
    time.sleep(0.02)


def test_sigkill_then_sigterm_then_resume_matches_an_uninterrupted_run(tmp_path_factory, tmp_path):
  overrides = demo_overrides(tmp_path_factory)
  killed = start_train(tmp_path, overrides)
  reference_dir, reference = reference_run(tmp_path_factory)
  wait_for(lambda: (tmp_path / "checkpoints" / "30").is_dir(), killed, "checkpoint 30")
  killed.kill()
  killed.wait()
  assert not (tmp_path / "checkpoints" / "60").exists(), "the run reached step 60 before it was killed"
  before = len(records(tmp_path))
  assert before >= 30

  stopped = start_train(tmp_path, overrides)
  # The restart first drops the rows the killed run logged after its checkpoint 30 (each step appears once), then
  # logs its own from step 31 on.
  dropped = [before == 30]

  def restarted_and_stepped() -> bool:
    count = len(records(tmp_path))
    dropped[0] = dropped[0] or count == 30
    return dropped[0] and count > 30

  wait_for(restarted_and_stepped, stopped, "a step after the restart")
  stopped.send_signal(signal.SIGTERM)
  output = finish(stopped)
  assert "resuming from checkpoint 30 in" in output
  after_stop = records(tmp_path)
  step = after_stop[-1]["step"]
  assert [r["step"] for r in after_stop] == list(range(1, step + 1)) and 30 < step < 60
  before = 30
  saved = tmp_path / "checkpoints" / str(step)
  assert f"stopped on SIGTERM after step {step}; its checkpoint is in {saved}; run the same command to resume" in output
  assert (saved / "data" / "process_0-of-1.index").is_file()

  output = finish(start_train(tmp_path, overrides))
  assert f"resuming from checkpoint {step} in" in output
  resumed = {r["step"]: comparable(r) for r in records(tmp_path)[before:]}
  if reference is not None:
    finish(reference)
  expected = {r["step"]: comparable(r) for r in records(reference_dir)}
  assert sorted(resumed) == list(range(31, 61))
  for s in range(31, 61):
    assert resumed[s] == expected[s], f"step {s}: {resumed[s]} != {expected[s]}"
  assert [comparable(r) for r in records(tmp_path)[:30]] == [expected[s] for s in range(1, 31)]
