"""Data-parallel training on the CPU: two gloo processes launched by torch's elastic launcher.

Each rank trains on its share of every epoch's permutation with half the global batch; the
steps per epoch, the first epoch's loss and the validation scores must be those of one process
with the same global batch, every rank's per-sample EFM store must hold the same complete maps,
and only rank 0 writes.
"""

from __future__ import annotations

import shutil

import pandas as pd
import pytest
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler
from torchmetrics.classification import MulticlassConfusionMatrix

from efm_seg.efm import EFMLoss
from efm_seg.loading import SegmentationSamples
from efm_seg.models import model_from_checkpoint
from efm_seg.training import distributed
from efm_seg.training.resume import StateFile
from efm_seg.training.trainer import StageJob, Trainer, epoch_scores, train
from tests.conftest import kedro_run, latest_version, saved_versions
from tests.training.test_trainer import CLASSES, IGNORE, make_asymmetric_store, make_config

EPOCHS = 2
GLOBAL_BATCH = 4


class RecordingSampler(DistributedSampler):
    """The trainer's sampler, recording the indices it hands this rank in each epoch."""

    def __iter__(self):
        order = list(super().__iter__())
        self.orders.append(order)
        return iter(order)


def fit_on_every_rank(job: StageJob) -> dict:
    """A worker: train, then gather what each rank holds (run by ``distributed.launch``)."""
    trainer = Trainer(
        job.config, job.store, job.train_ids, job.val_ids, job.classes, job.ignore_index,
        state_file=job.state_file,
    )  # fmt: skip
    trainer.sampler.__class__ = RecordingSampler
    trainer.sampler.orders = []
    result = trainer.fit()
    store = trainer.state.efm_store
    mine = {
        "rank": trainer.rank,
        "maps": store._maps.clone(),
        "complete": bool(store._updated.all()),
        "weights": trainer.state.model.state_dict()["encoder.conv1.weight"].clone(),
        "history": result.history,
        "orders": trainer.sampler.orders,
    }
    everyone = [None] * dist.get_world_size()
    dist.all_gather_object(everyone, mine)
    return {"result": result, "ranks": everyone}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_asymmetric_store(tmp_path_factory.mktemp("ddp") / "encoded")


def config(nproc: int, **changes):
    return make_config(
        **{
            "epochs": EPOCHS,
            "batch_size": GLOBAL_BATCH,
            "augment": {"enabled": False},
            # Plain eq. 6 in the first epoch (compared with one process), maps from the second.
            "efm": {"enabled": True, "source": "per_sample", "start_epoch": 2, "every": 1},
            # A rank left waiting fails the test in a minute instead of hanging it.
            "distributed": {"nproc_per_node": nproc, "timeout": 60},
            **changes,
        }
    )


def job(store, nproc: int, state_file=None, **changes) -> StageJob:
    ids = list(store.ids)
    # 8 training samples: one process takes 2 steps of 4; each of two ranks 2 steps of 2.
    return StageJob(
        config(nproc, **changes), store, ids[:8], ids[8:], CLASSES, IGNORE, state_file=state_file
    )


@pytest.fixture(scope="module")
def single(store):
    return train(job(store, 1))


@pytest.fixture(scope="module")
def two_ranks(store):
    launch = distributed.DistributedConfig(nproc_per_node=2, timeout=60)
    return distributed.launch(launch, fit_on_every_rank, job(store, 2), device="cpu")


def test_steps_per_epoch_follow_the_global_batch(single, two_ranks):
    assert [row["steps"] for row in single.history] == [2] * EPOCHS
    for rank in two_ranks["ranks"]:
        assert [row["steps"] for row in rank["history"]] == [2] * EPOCHS


def test_the_first_epochs_loss_is_close_to_one_process(single, two_ranks):
    one = single.history[0]["train_loss"]
    two = two_ranks["result"].history[0]["train_loss"]
    # The same initial weights; batch norm sees 2 samples per rank instead of 4 at once.
    print(f"first-epoch training loss: one process {one:.4f}, two processes {two:.4f}")
    assert two == pytest.approx(one, rel=0.1)


def test_the_ranks_agree_and_their_efm_stores_are_complete_and_equal(two_ranks):
    ranks = sorted(two_ranks["ranks"], key=lambda r: r["rank"])
    assert [r["rank"] for r in ranks] == [0, 1]
    assert all(r["complete"] for r in ranks)
    assert torch.equal(ranks[0]["maps"], ranks[1]["maps"])
    assert ranks[0]["maps"].float().mean() > 0  # real maps, not the empty store
    assert torch.equal(ranks[0]["weights"], ranks[1]["weights"])  # DDP kept them in step
    # Reduced metrics: the same on every rank (the time each took aside).
    untimed = [
        [{k: v for k, v in row.items() if k != "seconds"} for row in r["history"]] for r in ranks
    ]
    assert untimed[0] == untimed[1]


def test_the_shuffle_changes_every_epoch_and_the_ranks_share_one_permutation(two_ranks):
    orders = [rank["orders"] for rank in two_ranks["ranks"]]
    assert all(len(epochs) == EPOCHS for epochs in orders)
    for epoch in range(EPOCHS):
        shares = [set(epochs[epoch]) for epochs in orders]
        # Disjoint shares of one permutation: ranks drawing their own would overlap.
        assert not shares[0] & shares[1]
        assert len(shares[0] | shares[1]) == 8
    for epochs in orders:  # a new permutation every epoch (DistributedSampler.set_epoch)
        assert epochs[0] != epochs[1]


def test_validation_scores_are_over_the_whole_validation_split(store, two_ranks):
    checkpoint = two_ranks["result"].checkpoint
    model = model_from_checkpoint(checkpoint).eval()
    loss = dict(config(1).loss)
    eq6 = EFMLoss(
        len(CLASSES), ignore_index=IGNORE, gamma=0.0, topk_ratio=1.0,
        **{k: loss[k] for k in ("lambda_ce", "lambda_dice", "label_smoothing")},
    )  # fmt: skip
    val = list(store.ids)[8:]  # 2 samples: 1 on each rank
    confusion = MulticlassConfusionMatrix(len(CLASSES), ignore_index=IGNORE)
    total = 0.0
    with torch.no_grad():
        # Batches of one, as each rank validates its one sample (dice is per batch).
        for batch in DataLoader(SegmentationSamples(store, val), batch_size=1):
            logits = model(batch["image"])
            total += float(eq6(logits, batch["mask"])) * len(batch["mask"])
            confusion.update(logits.argmax(dim=1), batch["mask"])
    recorded = checkpoint["metrics"]
    assert recorded["val_iou"] == pytest.approx(epoch_scores(confusion.compute())["iou"], abs=1e-6)
    assert recorded["val_loss"] == pytest.approx(total / len(val), rel=1e-5)


class Interrupted(Exception):
    pass


def test_every_rank_resumes_the_saved_state(store, tmp_path):
    # A one-process run of the same recipe, killed in its second epoch: where a stage runs (and
    # on how many processes) is not part of what a saved state must match.
    state_file = StateFile(tmp_path / "state.pt")
    single_job = job(store, 1, state_file=state_file)
    first = Trainer(
        single_job.config, store, single_job.train_ids, single_job.val_ids, CLASSES, IGNORE,
        state_file=state_file,
    )  # fmt: skip
    steps = []

    def crash(*_):
        steps.append(1)
        if len(steps) == 3:  # two steps per epoch: the first of epoch 2
            raise Interrupted

    first.state.optimizer.register_step_post_hook(crash)
    with pytest.raises(Interrupted):
        first.fit()
    saved = torch.load(state_file.path, weights_only=True)
    assert saved["epoch"] == 1

    launch = distributed.DistributedConfig(nproc_per_node=2, timeout=60)
    resumed = distributed.launch(
        launch, fit_on_every_rank, job(store, 2, state_file=state_file), device="cpu"
    )
    ranks = resumed["ranks"]
    for rank in ranks:  # epoch 1 is the saved one, epoch 2 trained by both ranks
        assert [row["epoch"] for row in rank["history"]] == [1, 2]
        assert rank["history"][0] == saved["history"][0]
    assert torch.equal(ranks[0]["weights"], ranks[1]["weights"])
    assert not state_file.path.exists()  # rank 0 removed it when the stage was done


def test_a_failing_rank_stops_the_run_with_its_error(store):
    with pytest.raises(distributed.DistributedError, match=r"lr|learning rate|NaN"):
        train(job(store, 2, optimizer={"lr": 1.0e30}, grad_clip=None))


def test_sync_batchnorm_on_the_cpu_is_refused_before_training():
    with pytest.raises(Exception, match=r"SyncBatchNorm works on CUDA only"):
        config(2, device="cpu", distributed={"nproc_per_node": 2, "sync_batchnorm": True})


def test_the_global_batch_must_split_evenly():
    with pytest.raises(Exception, match=r"batch_size: 5 is the global batch.*multiple"):
        config(2, batch_size=5)


def test_a_kedro_run_on_two_processes_writes_its_outputs_once(kedro_project):
    # The three stages on two processes each; each output is written once, by rank 0.
    kedro_run(
        kedro_project,
        ["ingestion", "preprocessing", "split", "baseline", "efm"],
        **{
            "training.distributed.nproc_per_node": 2,
            "training.distributed.timeout": 60,
            "training.device": "cpu",
        },
    )
    for stage in ("baseline", "efm"):
        assert len(saved_versions(kedro_project, f"06_models/{stage}/best_checkpoint.pt")) == 1
        history = latest_version(kedro_project, f"data/local/07_model_output/{stage}/history.csv")
        rows = pd.read_csv(history)
        assert rows["epoch"].tolist() == [1, 2]  # one row per epoch, not one per rank
        # The steps of one process with the global batch of 4, whatever the training split's
        # size (the demo's is odd: each rank's share of it drops the same tail).
        split = pd.read_csv(latest_version(kedro_project, "data/local/05_model_input/split.csv"))
        assert rows["steps"].tolist() == [(split["split"] == "train").sum() // 4] * 2
    checkpoint = torch.load(
        latest_version(kedro_project, "data/local/06_models/efm/best_checkpoint.pt"),
        weights_only=True,
    )
    assert checkpoint["config"]["distributed"]["nproc_per_node"] == 2
    # The resumable state is cleared by rank 0 once the stage is done.
    assert not list((kedro_project / "data/local").rglob("*.state*"))
    shutil.rmtree(kedro_project / "data", ignore_errors=True)
