"""``edge train benchmark``: the paper's comparison (Ward et al. 2022) on the real data.

Methods: a supervised encoder trained from scratch on the labelled subset, and linear probes on
frozen encoders pretrained with SimCLR, SimCLR + cluster correction (eliminate / attract),
SimCLR + domain mixing, and both together. Each at several label fractions and seeds, on
AI4Mars validation tiles (4 classes) and MSL v2.1 validation images (19 classes).

Single-domain encoders pretrain on the evaluated dataset's own unlabelled train images; mixed
encoders draw from AI4Mars, MSL and HiRISE in the preset's proportions and serve both datasets.
Each finished (dataset, method, seed) writes a result file, so an interrupted benchmark picks up
where it stopped, and a result asked for at a label fraction it lacks runs just that fraction.
The summary (``benchmark.json`` / ``benchmark.md``, and ``runs.json`` with each run's times
and pretraining history) is rewritten at the end.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edge.atomic_file import write_bytes_atomic
from edge.outputs import write_json_atomic
from train.clustering import ClusterConfig
from train.datasets.errors import DatasetError
from train.device import PRECISIONS, pick_device
from train.labelled_sets import LabelledSet, canonical, load_labelled
from train.metrics import MIN_SUPPORT, evaluate
from train.pool import Pool, load_pool, parse_domains
from train.pretrain import PretrainConfig, pretrain
from train.probe import ProbeConfig, extract_features, load_encoder, train_linear_head
from train.revision import git_revision
from train.supervised import SupervisedConfig, train_supervised
from train.tiles import TileDataConfig, default_data_root

METHODS = ("supervised", "simclr", "simclr+cluster-eliminate", "simclr+cluster-attract",
           "simclr+mix", "simclr+cluster+mix")
SPLIT_NAMES = {"ai4mars": "val (clock-ordered: latest 20% of the labelled frames)",
               "msl-v2.1": "val (val-set-v2.1.txt)"}


@dataclass(frozen=True)
class BenchmarkPreset:
    """Everything that sets the cost of a benchmark run (one pretraining = epochs x
    epoch_size draws from the pool)."""

    name: str
    encoder: str = "tiny"
    tile_pixels: int = 32
    batch_size: int = 256
    epochs: int = 4
    epoch_size: int = 12288
    lr: float = 2e-3
    ai4mars_train_frames: int | None = 1200
    ai4mars_val_frames: int | None = None
    max_items_per_domain: int | None = 30000
    mix: tuple[tuple[str, float], ...] = (("ai4mars", 0.5), ("msl", 0.3), ("hirise", 0.2))
    cluster_ks: tuple[int, ...] = (32, 64)
    cluster_warmup: int = 1
    cluster_every: int = 1
    combined_mode: str = "eliminate"
    supervised_steps: int = 400
    probe_steps: int = 500
    #: Pretraining's and the supervised baseline's arithmetic (train.device.PRECISIONS);
    #: ``--override precision=bf16`` on a CPU with native bfloat16.
    precision: str = "auto"


PRESETS = {
    # What fits a 2-core CPU session: about 2 minutes of pretraining per encoder.
    "cpu-tiny": BenchmarkPreset("cpu-tiny"),
    # The CPU "small" preset: the 373k-parameter encoder, 3x the tiny preset's draws;
    # one pretraining took 15-18 minutes on 2 cores here (k-means included), under the 60
    # asked. The supervised baseline gets the 2,000 steps that made cpu-tiny's fair.
    "cpu-small": BenchmarkPreset(
        "cpu-small", encoder="small", epochs=6, epoch_size=24576, cluster_warmup=2,
        cluster_every=2, supervised_steps=2000),
    # For a lent GPU (never run in this workplace): ResNet-18 at 64 px, 100 epochs-worth.
    "gpu-resnet18": BenchmarkPreset(
        "gpu-resnet18", encoder="resnet18", tile_pixels=64, batch_size=512, epochs=50,
        epoch_size=131072, lr=1e-3, ai4mars_train_frames=None, max_items_per_domain=None,
        cluster_ks=(64, 128, 256), cluster_warmup=10, cluster_every=5, supervised_steps=8000,
        probe_steps=1000),
}


#: Tuple fields that ``--override`` takes, with how their text is read: the pretraining mix
#: as ``--domains`` writes it, the cluster k as a comma-separated list.
TUPLE_OVERRIDES: dict[str, Callable[[str], tuple[Any, ...]]] = {
    "mix": parse_domains,
    "cluster_ks": lambda text: tuple(int(k) for k in text.split(",")),
}


def parse_overrides(items: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """``KEY=VALUE`` strings -> preset overrides, each value converted to the type of the
    preset's field (int, float or str fields, and the tuples of :data:`TUPLE_OVERRIDES`,
    e.g. ``mix=msl:0.8,ai4mars:0.1,hirise:0.1``); raises ValueError naming the bad item."""
    types = {f.name: type(getattr(BenchmarkPreset("x"), f.name)) for f in fields(BenchmarkPreset)}
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        kind = types.get(key)
        if not sep or key == "name" or (kind not in (int, float, str)
                                        and key not in TUPLE_OVERRIDES):
            known = sorted(k for k, t in types.items()
                           if (t in (int, float, str) or k in TUPLE_OVERRIDES) and k != "name")
            raise ValueError(f"--override {item!r}: want KEY=VALUE with KEY one of "
                             f"{', '.join(known)}")
        if key == "precision" and value not in PRECISIONS:
            raise ValueError(f"--override {item!r}: precision takes one of "
                             f"{', '.join(PRECISIONS)}")
        try:
            out[key] = TUPLE_OVERRIDES[key](value) if key in TUPLE_OVERRIDES else kind(value)
        except (ValueError, DatasetError) as exc:
            what = "a list" if key in TUPLE_OVERRIDES else f"a {kind.__name__}"
            raise ValueError(f"--override {item!r}: {key} takes {what} ({exc})") from None
    return out


@dataclass
class BenchmarkConfig:
    """Which grid to run, where to keep runs (``work_dir``) and where to write the summary."""

    preset: str = "cpu-tiny"
    seeds: tuple[int, ...] = (0, 1, 2)
    datasets: tuple[str, ...] = ("ai4mars", "msl-v2.1")
    methods: tuple[str, ...] = METHODS
    fractions: tuple[float, ...] = (0.01, 0.1, 1.0)
    work_dir: str = "runs/benchmark"
    out_dir: str = "docs/results"
    data_root: str = str(default_data_root())
    threads: int | None = None
    command: str = ""
    preset_overrides: dict[str, Any] = field(default_factory=dict)

    def resolved_preset(self) -> BenchmarkPreset:
        """The named preset with any overrides applied."""
        if self.preset not in PRESETS:
            raise ValueError(f"unknown preset {self.preset!r} (choose from {sorted(PRESETS)})")
        return replace(PRESETS[self.preset], **self.preset_overrides)


class _Benchmark:
    """Holds the loaded data of one benchmark process."""

    def __init__(self, cfg: BenchmarkConfig, log: Callable[[str], None]):
        self.cfg, self.log = cfg, log
        self.preset = cfg.resolved_preset()
        p = self.preset
        root = Path(cfg.data_root)
        self.data = TileDataConfig(root=str(root / "ai4mars-msl-ncam-256"),
                                   tile_pixels=p.tile_pixels,
                                   max_train_frames=p.ai4mars_train_frames,
                                   max_val_frames=p.ai4mars_val_frames)
        self.msl_root, self.hirise_root = str(root / "msl-v2.1"), str(root / "hirise-v1")
        self.work = Path(cfg.work_dir) / p.name
        self.sets: dict[str, tuple[LabelledSet, LabelledSet]] = {}
        self.pools: dict[tuple, Pool] = {}

    def labelled(self, dataset: str) -> tuple[LabelledSet, LabelledSet]:
        if dataset not in self.sets:
            t0 = time.perf_counter()
            self.sets[dataset] = (
                load_labelled(dataset, "train", self.data, self.msl_root),
                load_labelled(dataset, "val", self.data, self.msl_root))
            tr, va = self.sets[dataset]
            self.log(f"{dataset}: {len(tr.labels)} labelled train / {len(va.labels)} val items "
                     f"in {time.perf_counter() - t0:.0f} s")
        return self.sets[dataset]

    def pretrain_config(self, method: str, dataset: str, seed: int) -> tuple[str, PretrainConfig]:
        """The run key and config of the encoder ``method`` uses for ``dataset``."""
        p = self.preset
        primary = "msl" if dataset == "msl-v2.1" else "ai4mars"
        mixed = method.endswith("+mix")
        domains = p.mix if mixed else ((primary, 1.0),)
        cluster = None
        if "cluster" in method:
            mode = p.combined_mode if mixed else method.rsplit("-", 1)[1]
            cluster = ClusterConfig(mode=mode, ks=p.cluster_ks, warmup_epochs=p.cluster_warmup,
                                    every_epochs=p.cluster_every)
        key = method if mixed else f"{method}@{primary}"
        return key, PretrainConfig(
            out_dir=str(self.work / f"seed{seed}" / key.replace("+", "_").replace("@", "_on_")),
            preset=p.encoder, data=self.data, batch_size=p.batch_size, epochs=p.epochs,
            lr=p.lr, seed=seed, threads=self.cfg.threads, domains=domains,
            msl_root=self.msl_root, hirise_root=self.hirise_root,
            max_items_per_domain=p.max_items_per_domain, epoch_size=p.epoch_size,
            cluster=cluster, monitor="msl" if primary == "msl" and not mixed else "ai4mars",
            precision=p.precision)

    def encoder_for(self, method: str, dataset: str, seed: int) -> Path:
        key, pcfg = self.pretrain_config(method, dataset, seed)
        ckpt = Path(pcfg.out_dir) / "encoder.pt"
        done = Path(pcfg.out_dir) / "done.json"
        settings = pretrain_settings(pcfg)
        if done.exists():
            saved = json.loads(done.read_text()).get("settings")
            if saved is not None:
                saved = SETTINGS_BEFORE | saved
            # done.json files written before settings were recorded are taken as they are
            if saved is not None and saved != settings:
                raise ValueError(f"{done}: its encoder was pretrained with other settings than "
                                 "this run's; use another --work-dir or remove it")
            return ckpt
        pool_key = tuple(pcfg.domains)
        if pool_key not in self.pools:
            self.pools[pool_key] = load_pool(pcfg.pool_config(), log=self.log)
        self.log(f"pretraining {key}, seed {seed}")
        t0 = time.perf_counter()
        pretrain(replace(pcfg, resume=True), log=self.log, pool=self.pools[pool_key])
        write_json_atomic(done, {"key": key, "seconds": round(time.perf_counter() - t0, 1),
                                 "settings": settings})
        return ckpt

    def run_records(self, datasets: list[str]) -> list[dict[str, Any]]:
        """``runs.json``: one record per result file of the grid's datasets and methods, with
        its wall time (``seconds``; it includes the encoder's pretraining when that result
        trained it), the encoder's pretraining time from its ``done.json``
        (``pretrain_seconds``; None for the supervised baseline or an encoder trained by an
        older version), the project revisions its fractions were computed at
        (``git_revisions``; 'unrecorded' for results of older versions) and the per-epoch
        pretraining history."""
        out: list[dict[str, Any]] = []
        for dataset in datasets:
            for method in self.cfg.methods:
                results = [json.loads(path.read_text()) for path in
                           results_folder(self.work, dataset, method).glob("seed*.json")]
                for r in sorted(results, key=lambda r: r["seed"]):
                    pretrain_s = None
                    if method != "supervised":
                        _, pcfg = self.pretrain_config(method, dataset, r["seed"])
                        done = Path(pcfg.out_dir) / "done.json"
                        if done.exists():
                            pretrain_s = json.loads(done.read_text()).get("seconds")
                    revisions = {m.get("git_revision", "unrecorded")
                                 for m in r["fractions"].values()}
                    out.append({"dataset": dataset, "method": method, "seed": r["seed"],
                                "seconds": r.get("seconds"), "pretrain_seconds": pretrain_s,
                                "git_revisions": sorted(revisions),
                                "pretrain_epochs": r.get("pretrain_history", [])})
        return out

    def run_one(self, dataset: str, method: str, seed: int,
                fractions: tuple[float, ...]) -> dict[str, Any]:
        """One (dataset, method, seed) result at the given label fractions; each fraction's
        metrics record the project's revision, since a cached result can gain fractions
        later, under other code."""
        revision = git_revision()
        train, val = self.labelled(dataset)
        p = self.preset
        min_support = MIN_SUPPORT[dataset]
        out: dict[str, Any] = {"dataset": dataset, "method": method, "seed": seed,
                               "preset": asdict(p), "fractions": {}}
        if method == "supervised":
            for frac in fractions:
                sub = train.subset(train.fraction(frac, seed))
                m = train_supervised(sub, val, SupervisedConfig(
                    preset=p.encoder, steps=p.supervised_steps, seed=seed,
                    precision=p.precision), min_support)
                out["fractions"][str(frac)] = m | {"git_revision": revision}
                self.log(f"  {dataset} supervised seed {seed} @ {frac:.0%}: "
                         f"acc {m['accuracy']:.4f} mean recall {m['mean_recall']:.4f}")
            return out
        ckpt = self.encoder_for(method, dataset, seed)
        encoder, saved = load_encoder(ckpt)
        out["pretrain_history"] = saved["history"]
        dev = pick_device("auto")  # features on the GPU when there is one
        encoder = encoder.to(dev, memory_format=torch.channels_last)
        f_train = extract_features(encoder, train.inputs, device=dev)
        f_val = extract_features(encoder, val.inputs, device=dev)
        for frac in fractions:
            idx = train.fraction(frac, seed)
            head = train_linear_head(f_train[idx], torch.from_numpy(train.labels[idx]),
                                     len(train.classes),
                                     ProbeConfig(seed=seed, steps=p.probe_steps))
            with torch.no_grad():
                pred = head(f_val).argmax(1).numpy()
            m = evaluate(pred, val.labels, val.classes, min_support)
            m["train_items"] = int(len(idx))
            out["fractions"][str(frac)] = m | {"git_revision": revision}
            self.log(f"  {dataset} {method} seed {seed} @ {frac:.0%}: "
                     f"acc {m['accuracy']:.4f} mean recall {m['mean_recall']:.4f}")
        return out


#: What makes two pretrainings the same, for reusing a cached encoder, with the tile data's
#: settings; not where the data lies, the threads or the output folder (a work folder may
#: move between machines).
PRETRAIN_SETTINGS = ("preset", "augment", "batch_size", "epochs", "max_minutes", "lr",
                     "weight_decay", "temperature", "seed", "domains", "max_items_per_domain",
                     "epoch_size", "cluster", "monitor", "precision")
#: Settings added since a work folder may have been written, with what it then ran as.
SETTINGS_BEFORE = {"precision": "auto"}


def pretrain_settings(pcfg: PretrainConfig) -> dict[str, Any]:
    """The JSON form of ``pcfg``'s :data:`PRETRAIN_SETTINGS`."""
    full = asdict(pcfg)
    data = {k: v for k, v in full["data"].items() if k != "root"}
    return json.loads(json.dumps({"data": data, **{k: full[k] for k in PRETRAIN_SETTINGS}}))


def _check_same_preset(path: Path, preset: dict[str, Any]) -> None:
    """Refuse to mix results of different settings under one work folder."""
    saved = json.loads(path.read_text()).get("preset")
    if isinstance(saved, dict):
        saved = SETTINGS_BEFORE | saved
    if json.loads(json.dumps(saved)) != json.loads(json.dumps(preset)):
        raise ValueError(f"{path}: made with other preset settings than this run's; "
                         "use another --work-dir or remove it")


def results_folder(work: Path, dataset: str, method: str) -> Path:
    """The folder of one (dataset, method)'s per-seed result files."""
    return work / "results" / dataset / method.replace("+", "_")


def result_path(work: Path, dataset: str, method: str, seed: int) -> Path:
    """Where one (dataset, method, seed) result lives."""
    return results_folder(work, dataset, method) / f"seed{seed}.json"


def run_benchmark(cfg: BenchmarkConfig, log: Callable[[str], None] = print) -> list[dict]:
    """Run every missing (seed, dataset, method) of the grid, then write the summary;
    returns the summary records."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    bench = _Benchmark(cfg, log)
    datasets = [canonical(d) for d in cfg.datasets]
    for method in cfg.methods:
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r} (choose from {', '.join(METHODS)})")
    for seed in cfg.seeds:
        for dataset in datasets:
            for method in cfg.methods:
                path = result_path(bench.work, dataset, method, seed)
                done: dict[str, Any] = {"fractions": {}, "seconds": 0.0}
                if path.exists():
                    _check_same_preset(path, asdict(bench.preset))
                    done = json.loads(path.read_text())
                missing = tuple(f for f in cfg.fractions if str(f) not in done["fractions"])
                if not missing:
                    continue
                t0 = time.perf_counter()
                result = bench.run_one(dataset, method, seed, missing)
                # A cached result asked for at new fractions keeps the ones it had.
                result["fractions"] = {**done["fractions"], **result["fractions"]}
                result["seconds"] = round(done.get("seconds", 0.0)
                                          + time.perf_counter() - t0, 1)
                write_json_atomic(path, result)
    records = summarise(bench.work, bench.preset.name, cfg.command, datasets, cfg.methods,
                        cfg.fractions, seeds=cfg.seeds)
    write_summary(Path(cfg.out_dir), records, asdict(bench.preset), bench.run_records(datasets))
    return records


def summarise(work: Path, preset: str, command: str, datasets: list[str],
              methods: tuple[str, ...], fractions: tuple[float, ...],
              seeds: tuple[int, ...] | None = None) -> list[dict]:
    """benchmark.json records (mean and sample std over the seeds) from result files:
    ``seeds`` only (the run's ``--seeds``: a work folder may hold other seeds' results, and
    the records' command names these), or every seed found."""
    records = []
    for dataset in datasets:
        for method in methods:
            runs = sorted(results_folder(work, dataset, method).glob("seed*.json"))
            results = [json.loads(r.read_text()) for r in runs]
            results = [r for r in results if seeds is None or r["seed"] in seeds]
            for frac in fractions:
                got = [(r["seed"], r["fractions"][str(frac)]) for r in results
                       if str(frac) in r["fractions"]]
                if not got:
                    continue
                for metric in ("accuracy", "mean_recall"):
                    values = np.array([m[metric] for _, m in got], dtype=np.float64)
                    records.append({
                        "dataset": dataset, "split": SPLIT_NAMES[dataset], "method": method,
                        "label_fraction": frac, "metric": metric,
                        "mean": round(float(values.mean()), 4),
                        "std": round(float(values.std(ddof=1)) if len(values) > 1 else 0.0, 4),
                        "seeds": [s for s, _ in got],
                        "values": [round(float(v), 4) for v in values],
                        "preset": preset, "command": command,
                    })
    return records


def markdown_summary(records: list[dict], preset: dict[str, Any]) -> str:
    """Tables per dataset and label fraction: mean ± std of accuracy and mean recall."""
    lines = ["# Training benchmark (validation data)", "",
             f"Preset `{preset['name']}`: encoder `{preset['encoder']}`, "
             f"{preset['tile_pixels']} px inputs, pretraining {preset['epochs']} x "
             f"{preset['epoch_size']} draws in batches of {preset['batch_size']}, "
             f"cluster k {list(preset['cluster_ks'])}, mix {dict(preset['mix'])}; supervised "
             f"baseline {preset['supervised_steps']} steps, probes {preset['probe_steps']} "
             "steps.", ""]
    if records:
        lines += [f"Command: `{records[0]['command']}`", ""]
    index = {(r["dataset"], r["method"], r["label_fraction"], r["metric"]): r for r in records}
    for dataset in dict.fromkeys(r["dataset"] for r in records):
        for frac in sorted({r["label_fraction"] for r in records if r["dataset"] == dataset}):
            lines += [f"## {dataset}, {frac:.0%} of labels", "",
                      "| method | accuracy | mean per-class recall | seeds |",
                      "|---|---|---|---|"]
            for method in METHODS:
                acc = index.get((dataset, method, frac, "accuracy"))
                rec = index.get((dataset, method, frac, "mean_recall"))
                if acc and rec:
                    lines.append(f"| {method} | {acc['mean']:.4f} ± {acc['std']:.4f} | "
                                 f"{rec['mean']:.4f} ± {rec['std']:.4f} | {len(acc['seeds'])} |")
            lines.append("")
    lines.append("Mean ± sample standard deviation over seeds. Validation data only; the "
                 "withheld test sets were not used.")
    return "\n".join(lines) + "\n"


def write_summary(out_dir: Path, records: list[dict], preset: dict[str, Any],
                  runs: list[dict] | None = None) -> None:
    """Write ``benchmark.json``, ``benchmark.md`` and, when given, ``runs.json`` (each run's
    times and pretraining history, :meth:`_Benchmark.run_records`) atomically."""
    write_json_atomic(out_dir / "benchmark.json", records)
    write_bytes_atomic(out_dir / "benchmark.md", markdown_summary(records, preset).encode())
    if runs is not None:
        write_json_atomic(out_dir / "runs.json", runs)
