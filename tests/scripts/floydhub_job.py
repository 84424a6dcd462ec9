"""A training loop that reports the FloydHub way: one JSON metric per line, among other output."""

import json

print("loading data", flush=True)
for epoch in range(1, 4):
    for step in range(epoch * 100 - 50, epoch * 100 + 1, 50):
        print(json.dumps({"metric": "batch_loss", "value": 1.0 / step, "step": step}), flush=True)
    print(f"epoch {epoch} done", flush=True)
    print(json.dumps({"metric": "loss", "value": 1.5 / epoch, "epoch": epoch}), flush=True)
    print(json.dumps({"metric": "accuracy", "value": 0.25 * epoch, "epoch": epoch}), flush=True)
    print(
        json.dumps({"metric": "val-loss", "value": float("nan") if epoch == 2 else 2.0 / epoch, "epoch": epoch}),
        flush=True,
    )
print("finished", flush=True)
