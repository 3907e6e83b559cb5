"""TFRecord files through the file layer (bert_jax/files/storage.py).

Where TensorFlow's filesystem serves the path (local disk, and gs:// on a pod: its C++ GCS client reads shards in
parallel without the GIL), tf.data reads and writes it itself. Where the layer speaks to object storage through fsspec
(EPATH_USE_TF=false: the GCS emulator, which TensorFlow's client cannot reach), records are framed here, in
TensorFlow's format (length, masked CRC32C of the length, data, masked CRC32C of the data), and a shard is read
whole through the layer inside the tf.data graph (tf.py_function); the iterator's position still saves and
restores with tf.train.Checkpoint.
"""

import struct
import uuid

from bert_jax.data.tf_cpu import tf
from bert_jax.errors import UserError
from bert_jax.files import storage

CRC_MASK_DELTA = 0xA282EAD8


def masked_crc32c(data: bytes) -> int:
  import google_crc32c  # the gcs extra; the fsspec mode needs it

  crc = google_crc32c.value(data)
  return (((crc >> 15) | (crc << 17)) + CRC_MASK_DELTA) & 0xFFFFFFFF


def frame(record: bytes) -> bytes:
  length = struct.pack("<Q", len(record))
  return length + struct.pack("<I", masked_crc32c(length)) + record + struct.pack("<I", masked_crc32c(record))


def unframe(data: bytes, name: str = "") -> list[bytes]:
  """The records of a whole TFRecord file, each checked against its CRC."""
  records, at = [], 0
  while at < len(data):
    (length,) = struct.unpack_from("<Q", data, at)
    record = data[at + 12:at + 12 + length]
    if len(record) != length or struct.unpack_from("<I", data, at + 12 + length)[0] != masked_crc32c(record):
      raise UserError(f"{name} is damaged (a record's length or checksum does not match); prepare the data again")
    records.append(record)
    at += 16 + length
  return records


class Writer:
  """tf.io.TFRecordWriter's interface, for any path of the file layer."""

  def __init__(self, path: storage.Path):
    self.path = storage.path(path)
    if storage.tf_reads(self.path):
      self.tf_writer, self.file = tf.io.TFRecordWriter(str(self.path)), None
    else:
      self.tf_writer, self.file = None, self.path.open("wb")

  def write(self, record: bytes) -> None:
    if self.file is None:
      self.tf_writer.write(record)
    else:
      self.file.write(frame(record))

  def close(self) -> None:
    if self.file is None:
      self.tf_writer.close()
    else:
      self.file.close()


def _read(name) -> "tf.Tensor":
  path = name.numpy().decode()
  return tf.constant(unframe(storage.path(path).read_bytes(), path), tf.string)


def interleaved(names, directory: storage.Path, cycle_length: int):
  """The records of the files `names` (a dataset of file names in `directory`), `cycle_length` files at a time,
  one record from each in turn, deterministically."""
  if storage.tf_reads(directory):
    return names.interleave(tf.data.TFRecordDataset, cycle_length=cycle_length, block_length=1,
                            num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

  def records(name):
    found = tf.py_function(_read, [name], tf.string)
    found.set_shape([None])
    return tf.data.Dataset.from_tensor_slices(found)

  options = tf.data.Options()  # a shard is state outside the graph, read again on restore: the position still saves
  options.experimental_external_state_policy = tf.data.experimental.ExternalStatePolicy.IGNORE
  return names.interleave(records, cycle_length=cycle_length, block_length=1, num_parallel_calls=tf.data.AUTOTUNE,
                          deterministic=True).with_options(options)


def write_position(position: "tf.train.Checkpoint", prefix: storage.Path) -> None:
  """position.write(prefix): a tf.data iterator's state, PREFIX.index and PREFIX.data-*. Where TensorFlow's
  filesystem cannot reach `prefix`, written to TensorFlow's in-memory filesystem and copied through the layer."""
  prefix = storage.path(prefix)
  if storage.tf_reads(prefix):
    position.write(str(prefix))
    return
  staging = f"ram://bert_jax/{uuid.uuid4().hex}/{prefix.name}"
  position.write(staging)
  for name in tf.io.gfile.glob(staging + "*"):
    with tf.io.gfile.GFile(name, "rb") as f:
      (prefix.parent / name.rpartition("/")[2]).write_bytes(f.read())
    tf.io.gfile.remove(name)


def read_position(position: "tf.train.Checkpoint", prefix: storage.Path):
  """position.read(prefix) (its status), for a prefix `write_position` wrote."""
  prefix = storage.path(prefix)
  if storage.tf_reads(prefix):
    return position.read(str(prefix))
  staging = f"ram://bert_jax/{uuid.uuid4().hex}/{prefix.name}"
  copied = []
  for saved in prefix.parent.glob(prefix.name + ".*"):
    copied.append(staging.rpartition("/")[0] + "/" + saved.name)
    with tf.io.gfile.GFile(copied[-1], "wb") as f:
      f.write(saved.read_bytes())
  try:
    return position.read(staging)
  finally:
    for name in copied:
      tf.io.gfile.remove(name)
