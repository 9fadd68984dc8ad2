"""The samples scoring reads: a gradient stream for g and a memory for Hg.

``data`` may be:

- a tuple or list ``(x, y)`` or ``(x, y, sample_weight)`` of NumPy arrays,
  where ``x`` and ``y`` may also be lists or dicts of arrays (several inputs
  or outputs);
- a ``tf.data.Dataset`` (batched or not) yielding such tuples, or dicts: a
  tfds dataset loaded without ``as_supervised`` yields ``{"image": ...,
  "label": ...}``, read by default; other keys are named with
  ``data_keys=(input_keys, target_keys)`` or ``(input_keys, target_keys,
  weight_key)``, each a key or a list of keys;
- a ``keras.utils.PyDataset`` yielding such tuple batches;
- a ``tfprune.data.DataBundle`` (its augmented training stream, and a memory
  from its training split).

Both draws are materialized once as NumPy batches ``(x, y, sample_weight)``
(``sample_weight`` None when absent), so every measure scored from one
context sees the same samples. The memory is class-balanced (GraSP's: the
same number of samples of every class) when the loss has class labels, and
otherwise a seeded random draw of ``RANDOM_MEMORY_CLASSES`` times the
per-class count.
"""

from __future__ import annotations

import functools

import keras
import numpy as np
import tensorflow as tf

from tfprune.data import DataBundle, DataError, class_balanced_memory
from tfprune.data.sampling import balanced_indices
from tfprune.importance.task_data import LOST_TOKENIZER, lost_tokenizer

#: Examples scanned for a memory, as a multiple of its size, before giving up.
MEMORY_SCAN_FACTOR = 50

#: Without class labels, the memory holds ``samples_per_class`` times this many samples.
RANDOM_MEMORY_CLASSES = 10

#: The keys of a tfds image-classification dict read when ``data_keys`` is not given.
DEFAULT_KEYS = ("image", "label")


class SampleError(DataError):
    """The data cannot provide the samples a measure needs."""


# -- structures -----------------------------------------------------------------------
def batch_size_of(batch) -> int:
    """The number of examples in a ``(x, y, w)`` batch."""
    return int(len(keras.tree.flatten(batch[0])[0]))


def take_rows(batch, index):
    """The rows ``index`` (an index array or a slice) of every part of a ``(x, y, w)`` batch."""
    return tuple(None if part is None else keras.tree.map_structure(lambda a: a[index], part)
                 for part in batch)


def _concatenate(batches: list):
    first = batches[0]
    return tuple(None if first[i] is None else keras.tree.map_structure(
        lambda *arrays: np.concatenate(arrays), *[b[i] for b in batches])
        for i in range(3))


def _split(batch, size: int) -> list:
    total = batch_size_of(batch)
    return [take_rows(batch, slice(start, start + size)) for start in range(0, total, size)]


def _numpy(structure):
    return None if structure is None else keras.tree.map_structure(np.asarray, structure)


def _as_list(keys) -> list:
    return [keys] if isinstance(keys, str) else list(keys)


def _from_dict(element: dict, keys) -> tuple:
    """``(x, y, w)`` of a dict element, by ``keys`` or the tfds image/label convention."""
    chosen = DEFAULT_KEYS if keys is None else tuple(keys)
    if len(chosen) not in (2, 3):
        raise SampleError(f"data_keys must be (input_keys, target_keys) or (input_keys, "
                          f"target_keys, weight_key), got {keys!r}.")
    missing = [k for part in chosen for k in _as_list(part) if k not in element]
    if missing:
        hint = ("" if keys is not None else " A tfds dataset loaded without as_supervised has "
                "its own keys: pass data_keys=(input_keys, target_keys), or load it with "
                "as_supervised=True.")
        raise SampleError(f"data: dict elements have keys {sorted(element)}; missing "
                          f"{missing}.{hint}")

    def pick(part):
        names = _as_list(part)
        return element[names[0]] if isinstance(part, str) else {n: element[n] for n in names}

    return pick(chosen[0]), pick(chosen[1]), pick(chosen[2]) if len(chosen) == 3 else None


def as_batch(element, keys=None) -> tuple:
    """One element of the data as ``(x, y, w)``: a 2- or 3-tuple, or a dict via ``keys``."""
    if isinstance(element, dict):
        return _from_dict(element, keys)
    if isinstance(element, tuple | list) and len(element) in (2, 3):
        return element[0], element[1], element[2] if len(element) == 3 else None
    kind = type(element).__name__
    raise SampleError(
        f"data: an element must be (x, y), (x, y, sample_weight) or a dict, got a {kind}"
        f"{' of ' + str(len(element)) + ' items' if isinstance(element, tuple | list) else ''}. "
        "Scoring gradients needs targets as well as inputs.")


# -- the sources ----------------------------------------------------------------------
def _checked_arrays(data) -> tuple:
    x, y, w = (_numpy(part) for part in as_batch(tuple(data)))
    sizes = {name: {len(a) for a in keras.tree.flatten(part)}
             for name, part in (("inputs", x), ("targets", y), ("sample weights", w))
             if part is not None}
    lengths = set().union(*sizes.values())
    if len(lengths) != 1:
        raise SampleError(f"data: inputs, targets and sample weights must hold the same number "
                          f"of examples, got {sizes}.")
    if not lengths.pop():
        raise SampleError("data: no samples.")
    return x, y, w


def _dataset_batches(dataset: tf.data.Dataset, input_rank: int, batch_size: int, keys):
    """Yields ``(x, y, w)`` NumPy batches of a dataset, batching it if needed."""
    spec = as_batch(dataset.element_spec, keys)
    rank = keras.tree.flatten(spec[0])[0].shape.rank
    if rank == input_rank - 1:
        dataset = dataset.batch(batch_size)
    elif rank != input_rank:
        raise SampleError(
            f"data: inputs of rank {rank} do not fit a model input of rank {input_rank} "
            "(batched) or its examples."
        )
    try:
        for element in dataset.as_numpy_iterator():
            yield as_batch(element, keys)
    except tf.errors.NotFoundError as error:
        if not lost_tokenizer(error):
            raise
        raise SampleError(f"data: {LOST_TOKENIZER}") from None


def _py_dataset_batches(data: keras.utils.PyDataset, keys):
    count = data.num_batches
    if count is None:
        raise SampleError("data: a PyDataset of unknown length (num_batches None) cannot be "
                          "sampled; give it a __len__.")
    for index in range(count):
        yield tuple(_numpy(part) for part in as_batch(data[index], keys))


@functools.singledispatch
def stream_batches(data, *, input_rank: int, batch_size: int, seed: int, keys=None):
    """An iterator of ``(x, y, w)`` NumPy batches over ``data`` (shuffled for arrays)."""
    _unsupported(data)


def _unsupported(data):
    raise SampleError(
        "data must be (x, y) or (x, y, sample_weight) NumPy arrays, a tf.data.Dataset, a "
        f"keras.utils.PyDataset or a tfprune.data.DataBundle, got {type(data).__name__}."
    )


@stream_batches.register(tuple)
@stream_batches.register(list)
def _(data, *, input_rank, batch_size, seed, keys=None):
    batch = _checked_arrays(data)
    order = np.random.default_rng(seed).permutation(batch_size_of(batch))
    return iter(_split(take_rows(batch, order), batch_size))


@stream_batches.register(tf.data.Dataset)
def _(data, *, input_rank, batch_size, seed, keys=None):
    return _dataset_batches(data, input_rank, batch_size, keys)


@stream_batches.register(keras.utils.PyDataset)
def _(data, *, input_rank, batch_size, seed, keys=None):
    return _py_dataset_batches(data, keys)


@stream_batches.register(DataBundle)
def _(data, *, input_rank, batch_size, seed, keys=None):
    stream = data.train_dataset(start_epoch=seed, epochs=seed + 1).repeat()
    return _dataset_batches(stream, input_rank, batch_size, keys)


def gradient_batches(data, num_samples: int, *, input_rank: int, batch_size: int, seed: int,
                     keys=None) -> list:
    """Draws up to ``num_samples`` training samples as a list of ``(x, y, w)`` batches.

    Args:
        data: See the module docstring.
        num_samples: How many samples; fewer only if the data holds fewer.
        input_rank: The rank of the model's (first) batched input.
        batch_size: The batch size for arrays and unbatched datasets.
        seed: Chooses the samples of arrays and of a bundle's augmented stream.
        keys: ``data_keys`` for dict elements.

    Returns:
        A list of batches holding ``min(num_samples, available)`` samples.
    """
    taken, count = [], 0
    for batch in stream_batches(data, input_rank=input_rank, batch_size=batch_size, seed=seed,
                                keys=keys):
        keep = min(batch_size_of(batch), num_samples - count)
        taken.append(take_rows(batch, slice(0, keep)))
        count += keep
        if count >= num_samples:
            break
    return taken


def scoring_memory(data, objective, per_class: int, *, input_rank: int, seed: int,
                   keys=None) -> tuple:
    """The memory Hg is averaged over, as one ``(x, y, w)`` batch.

    With class labels (``objective.class_term``), ``per_class`` samples of
    every class, grouped by class (all of class 0 first), as GraSP draws them;
    without, ``per_class * RANDOM_MEMORY_CLASSES`` samples drawn at random.

    Args:
        data: See the module docstring.
        objective: The ``ScoringObjective``: reads class ids from the targets.
        per_class: Samples per class.
        input_rank: The rank of the model's (first) batched input.
        seed: Chooses the samples.
        keys: ``data_keys`` for dict elements.

    Raises:
        SampleError: If some class has fewer than ``per_class`` samples.
    """
    num_classes = objective.num_classes
    if isinstance(data, DataBundle):
        if num_classes is None or len(objective.terms) != 1:
            raise SampleError("a DataBundle is a classification dataset; the model's loss "
                              f"({objective.description}) is not one class cross-entropy.")
        if data.num_classes != num_classes:
            raise SampleError(
                f"data has {data.num_classes} classes but the model outputs {num_classes}."
            )
        images, labels = class_balanced_memory(data, per_class, seed)
        return images, labels, None
    size = per_class * (num_classes or RANDOM_MEMORY_CLASSES)
    if isinstance(data, tuple | list):
        pool = _checked_arrays(data)
    else:
        enough = None if num_classes is None else _class_counter(objective, num_classes, per_class)
        pool = _scan(data, size, input_rank=input_rank, seed=seed, keys=keys, enough=enough)
    total = batch_size_of(pool)
    if num_classes is None:
        if total < size:
            raise SampleError(f"data: {total} samples, fewer than the memory's {size} "
                              f"({per_class} x {RANDOM_MEMORY_CLASSES}); lower "
                              "samples_per_class.")
        chosen = np.sort(np.random.default_rng(seed).choice(total, size=size, replace=False))
        return take_rows(pool, chosen)
    labels = objective.class_ids(pool[1])
    try:
        indices = balanced_indices(labels, per_class, num_classes, seed, where="data")
    except DataError as error:
        scanned = "" if isinstance(data, tuple | list) else f" (in the first {total} examples)"
        raise SampleError(f"{error}{scanned} Lower samples_per_class.") from None
    return take_rows(pool, indices)


def _class_counter(objective, num_classes: int, per_class: int):
    """``enough(batch)``: True once the batches seen hold ``per_class`` of every class."""
    counts = np.zeros(num_classes, np.int64)

    def enough(batch) -> bool:
        ids = objective.class_ids(batch[1])
        counts[:] += np.bincount(ids[(ids >= 0) & (ids < num_classes)], minlength=num_classes)
        return bool(np.all(counts >= per_class))
    return enough


def _scan(data, size: int, *, input_rank: int, seed: int, keys, enough=None) -> tuple:
    """Examples of a stream as one batch.

    Up to ``MEMORY_SCAN_FACTOR * size``, or until ``enough(batch)`` says the
    batches so far suffice.
    """
    limit, batches, count = MEMORY_SCAN_FACTOR * size, [], 0
    for batch in stream_batches(data, input_rank=input_rank, batch_size=256, seed=seed,
                                keys=keys):
        batches.append(batch)
        count += batch_size_of(batch)
        if count >= limit or (enough is not None and enough(batch)):
            break
    if not batches:
        raise SampleError("data: no samples.")
    return _concatenate(batches)


def memory_batches(memory: tuple, size: int) -> list:
    """The memory split into ``(x, y, w)`` batches of ``size``."""
    return _split(memory, size)
