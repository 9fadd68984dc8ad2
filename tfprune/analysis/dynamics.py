"""Per-epoch measurements behind the paper's Observations 2-4 and Section 4.1.

``DynamicsRecorder`` is a Keras callback. At initialization and after every
epoch it records, for the prunable layers (conv / dense followed by BN):

- Observations 2/3 (Fig. 2): the Pearson / Spearman correlation, over all BN
  channels, between |sigma * delta sigma| (BN scale times its change over the
  epoch) and the loss-preservation importance of the scale, |sigma * g_sigma|;
  beside it the distance between consecutive epochs' early-bird masks (the
  ``early_bird_ratio`` of channels with the smallest |sigma|, You et al. 2020),
  as the fraction of channels whose mask bit flipped.
- Fig. 31 (unstructured): the same correlation per kernel weight,
  |theta * delta theta| against |theta * g|.
- Section 4.1: the correlation, over filters, between the L2 norm and the
  distance from initialization (global and the mean over layers).
- Fig. 21: the L2 norm of each layer's kernel gradient.
- Observation 4 (Fig. 3), at ``hessian_epochs``: per filter Theta_p^T H g and
  Theta_p^T g (g and Hg from the class-balanced memory, temperature 1).

Everything is measured with BatchNorm in inference mode (the paper's scoring
protocol). At initialization the moving statistics are still (0, 1), which
makes inference mode degenerate; there the moving statistics are first
recalibrated on the g samples (``tfprune.importance.batchnorm``: the mean batch
statistics over them) and restored afterwards, unless ``recalibrate_initial``
is False.

Each epoch is saved as ``epoch_<e>.npz`` (raw per-channel values) and a row of
``dynamics.csv`` in ``out_dir``, and as TensorBoard scalars, so an interrupted
run resumes with the previous epoch's state.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from tfprune.analysis.statistics import correlation
from tfprune.atomic import write_text
from tfprune.importance.batchnorm import recalibrated_batchnorm
from tfprune.importance.context import ScoringContext

#: Columns of dynamics.csv, in order.
COLUMNS = ("epoch", "bn_pearson", "bn_spearman", "mask_distance", "weight_pearson",
           "weight_spearman", "norm_distance_pearson", "norm_distance_layer_mean",
           "hg_g_pearson", "hg_g_spearman")


class DynamicsRecorder(keras.callbacks.Callback):
    """Records the quantities listed in the module docstring; see there.

    Args:
        data: Training data for g (a ``DataBundle``, dataset or arrays).
        out_dir: Where ``epoch_<e>.npz`` and ``dynamics.csv`` go.
        hessian_epochs: Epochs (0 = initialization) at which to compute Hg.
        num_samples: Samples averaged into g each epoch.
        samples_per_class: Memory size per class for Hg.
        temperature: Loss temperature for g (the training temperature).
        early_bird_ratio: Fraction of BN channels in the early-bird mask.
        start_epoch: The first epoch this fit runs (a resumed run's).
        log_dir: TensorBoard folder, or None.
        seed: Chooses the samples.
        recalibrate_initial: Measure initialization with BN statistics recalibrated
            on the g samples (see the module docstring).
    """

    def __init__(self, data, out_dir, *, hessian_epochs=(0,), num_samples: int = 512,
                 samples_per_class: int = 10, temperature: float = 1.0,
                 early_bird_ratio: float = 0.2, start_epoch: int = 0, log_dir=None,
                 seed: int = 0, recalibrate_initial: bool = True):
        super().__init__()
        if not 0 < early_bird_ratio < 1:
            raise ValueError(f"early_bird_ratio must be in (0, 1), got {early_bird_ratio}.")
        self.data = data
        self.out_dir = Path(out_dir)
        self.hessian_epochs = {int(e) for e in hessian_epochs}
        self.num_samples = num_samples
        self.samples_per_class = samples_per_class
        self.temperature = float(temperature)
        self.early_bird_ratio = early_bird_ratio
        self.start_epoch = start_epoch
        self.log_dir = log_dir
        self.seed = seed
        self.recalibrate_initial = recalibrate_initial
        self._writer = None
        self._previous = None
        self._initial = None

    # -- state ---------------------------------------------------------------------------
    @staticmethod
    def _snapshot(layers) -> dict:
        return {
            "names": np.array([layer.name for layer in layers]),
            "kernels": [np.asarray(layer.kernel, np.float64) for layer in layers],
            "gammas": [np.asarray(bn.gamma, np.float64) for bn in _scaled_norms(layers)],
        }

    def _path(self, epoch: int) -> Path:
        return self.out_dir / f"epoch_{epoch:03d}.npz"

    @staticmethod
    def _save_state(path: Path, state: dict, values: dict) -> None:
        arrays = {f"kernel_{i}": k for i, k in enumerate(state["kernels"])}
        arrays.update({f"gamma_{i}": g for i, g in enumerate(state["gammas"])})
        arrays.update(values)
        temporary = path.with_suffix(".tmp.npz")
        np.savez(temporary, names=state["names"], **arrays)
        temporary.replace(path)

    @staticmethod
    def _load_state(path: Path) -> dict:
        with np.load(path) as file:
            kernels = sorted((k for k in file.files if k.startswith("kernel_")),
                             key=lambda k: int(k.split("_")[1]))
            gammas = sorted((k for k in file.files if k.startswith("gamma_")),
                            key=lambda k: int(k.split("_")[1]))
            return {"names": file["names"], "kernels": [file[k] for k in kernels],
                    "gammas": [file[k] for k in gammas],
                    "mask": file["mask"] if "mask" in file.files else None}

    # -- Keras hooks ---------------------------------------------------------------------
    def on_train_begin(self, logs=None):
        """Records initialization, or reloads the state a resumed run continues from."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if self.log_dir is not None:
            self._writer = tf.summary.create_file_writer(str(self.log_dir))
        if self.start_epoch == 0 or not self._path(0).is_file():
            self._record(0)
        else:
            self._initial = self._load_state(self._path(0))
            self._previous = self._load_state(self._path(self.start_epoch))

    def on_epoch_end(self, epoch, logs=None):
        """Records the epoch just finished."""
        self._record(epoch + 1)

    def on_train_end(self, logs=None):
        """Closes the TensorBoard writer."""
        if self._writer is not None:
            self._writer.close()

    # -- measurements --------------------------------------------------------------------
    def _record(self, epoch: int) -> None:
        context = ScoringContext(self.model, self.data, num_samples=self.num_samples,
                                 samples_per_class=self.samples_per_class, seed=self.seed)
        if epoch == 0 and self.recalibrate_initial:
            with recalibrated_batchnorm(self.model, context.stream()):
                self._measure(epoch, context)
        else:
            self._measure(epoch, context)

    def _measure(self, epoch: int, context: ScoringContext) -> None:
        layers = [layer for layer in context.layers if not layer.parts]  # plain kernels
        state = self._snapshot(layers)
        if self._initial is None:
            self._initial = state
        g = context.gradients(self.temperature)
        norms = _scaled_norms(layers)
        gamma = _concat(state["gammas"])
        mask = _early_bird_mask(gamma, self.early_bird_ratio) if gamma.size else np.zeros(0)
        row = dict.fromkeys(COLUMNS, float("nan"))
        row["epoch"] = epoch
        values = {"mask": mask}
        if self._previous is not None and gamma.size:
            gamma_grad = _concat([g[context.position(bn.gamma)] for bn in norms])
            sigma_delta = np.abs(gamma * (gamma - _concat(self._previous["gammas"])))
            lp = np.abs(gamma * gamma_grad)
            row["bn_pearson"], row["bn_spearman"] = correlation(sigma_delta, lp)
            row["mask_distance"] = float(np.mean(mask != self._previous["mask"]))
            values.update(sigma_delta=sigma_delta, bn_loss_preservation=lp)
        if self._previous is not None:
            kernels, previous = state["kernels"], self._previous["kernels"]
            movement = _concat([np.abs(k * (k - p)).ravel() for k, p in zip(kernels, previous,
                                                                               strict=True)])
            lp = _concat([np.abs(np.asarray(layer.kernel) * g[context.position(layer.kernel)])
                          .ravel() for layer in layers])
            row["weight_pearson"], row["weight_spearman"] = correlation(movement, lp)
        norm = [np.linalg.norm(layer.by_filter(k), axis=0)
                for layer, k in zip(layers, state["kernels"], strict=True)]
        distance = [np.linalg.norm(layer.by_filter(k - k0), axis=0) for layer, k, k0 in
                    zip(layers, state["kernels"], self._initial["kernels"], strict=True)]
        if epoch > 0:
            row["norm_distance_pearson"] = correlation(_concat(norm), _concat(distance))[0]
            row["norm_distance_layer_mean"] = float(np.nanmean(
                [correlation(n, d)[0] for n, d in zip(norm, distance, strict=True)]))
        values["gradient_norms"] = np.array(
            [np.linalg.norm(g[context.position(layer.kernel)]) for layer in layers])
        if epoch in self.hessian_epochs:
            memory_g, memory_hg = context.hessian_gradients(1.0)
            theta_g, theta_hg = [], []
            for layer in layers:
                theta = layer.by_filter(np.asarray(layer.kernel, np.float64))
                position = context.position(layer.kernel)
                theta_g.append((theta * layer.by_filter(memory_g[position])).sum(0))
                theta_hg.append((theta * layer.by_filter(memory_hg[position])).sum(0))
            values.update(theta_g=_concat(theta_g), theta_hg=_concat(theta_hg))
            row["hg_g_pearson"], row["hg_g_spearman"] = correlation(values["theta_hg"],
                                                                    values["theta_g"])
        self._save_state(self._path(epoch), state, values)
        self._write_row(row)
        self._write_summaries(row, values["gradient_norms"], [layer.name for layer in layers])
        state["mask"] = mask
        self._previous = state

    def _write_row(self, row: dict) -> None:
        path = self.out_dir / "dynamics.csv"
        rows = []
        if path.is_file():
            rows = [r for r in csv.DictReader(path.open()) if int(r["epoch"]) < row["epoch"]]
        rows.append(row)
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        write_text(path, text.getvalue())

    def _write_summaries(self, row: dict, gradient_norms, names) -> None:
        if self._writer is None:
            return
        with self._writer.as_default(step=int(row["epoch"])):
            for key in COLUMNS[1:]:
                if np.isfinite(row[key]):
                    tf.summary.scalar(f"dynamics/{key}", row[key])
            for name, value in zip(names, gradient_norms, strict=True):
                tf.summary.scalar(f"gradient_norm/{name}", value)
        self._writer.flush()


def _scaled_norms(layers) -> list:
    """The BatchNormalization layers (with a scale) that follow the prunable layers, in order."""
    return [layer.batch_norm for layer in layers
            if layer.batch_norm is not None and layer.batch_norm.gamma is not None]


def _concat(arrays) -> np.ndarray:
    arrays = [np.ravel(a) for a in arrays]
    return np.concatenate(arrays) if arrays else np.zeros(0)


def _early_bird_mask(gamma: np.ndarray, ratio: float) -> np.ndarray:
    """True for the ``ratio`` of channels with the smallest |gamma| (marked for pruning)."""
    count = int(round(ratio * gamma.size))
    mask = np.zeros(gamma.size, bool)
    mask[np.argsort(np.abs(gamma), kind="stable")[:count]] = True
    return mask
