"""scripts/bench_loader.py: both loaders deliver every batch of every epoch, on the tiny dataset."""

from script_loader import load_script


def test_both_loaders_deliver_every_batch_of_every_epoch(tiny_dataset, capsys):
    bench = load_script("bench_loader")
    bench.main(["--data", str(tiny_dataset), "--config", "demo", "--batch-size", "2", "--workers", "1",
                "--epochs", "3", "--step-ms", "0", "--repeats", "1"])
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith(("per-epoch", "stream"))}
    assert set(rows) == {"per-epoch", "stream"}
    header = out.splitlines()[0]
    n_objects = int(header.split(" training objects")[0].split()[-1])
    assert n_objects > 0
    item = next(line for line in out.splitlines() if line.startswith("one item"))
    assert float(item.split(": ")[1].split(" ms")[0]) > 0 and f"over the {n_objects} objects" in item
    for row in rows.values():
        assert int(row[1]) == 3 * max(1, n_objects // 2)  # batches: every batch of the 3 epochs
        assert float(row[2]) > 0
