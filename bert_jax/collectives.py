"""The collectives of a compiled step, read from its optimized HLO text (`compiled.as_text()`): each one's kind, data,
replica group, the op it serves and how many times a step runs it.

A collective the compiler split into pieces (an asynchronous start, its continuations and its done, in fusions of
their own) keeps its channel id: pieces with one channel id and shape are one collective, run as often as its
least frequent piece (continuations of a gather before the layers' loop may sit inside the loop, each doing a
share). A start is typed (operands, results) where XLA:GPU writes it: a gather's and an all-to-all's data are the
results, a reduce-scatter's its operands. One inside a while loop runs once per trip: the loop's known_trip_count
where the compiler wrote one (XLA:CPU and XLA:GPU do), else read from its condition and body (`counter < N`, the
counter starting from a constant and stepping by a constant); a loop whose count cannot be read is counted once
(`Collective.trips_known` is False).

A TPU compiler turns the all-gather of a parameter before a matrix product, or the reduce-scatter of a gradient
after one, into a loop of collective-permutes overlapped with the product (a windowed einsum, "collective matmul");
those permutes are named for what they replace (`Collective.replaces`), and so is a permute of the same product and
shape outside the loop. It also writes a reduce-scatter as an all-reduce and a dynamic slice fused into an
`all-reduce-scatter` fusion: counted as the reduce-scatter it is; and an all-gather as an all-reduce of shards
written into zeros (dynamic-update-slice): an all-reduce that replaces an all-gather.

Bytes each device sends, for data of b bytes and g devices in a group (ring algorithms):
  all-gather (b: the gathered result)        (1 - 1/g) b
  reduce-scatter (b: the input)              (1 - 1/g) b
  all-reduce                                 2 (1 - 1/g) b
  all-to-all                                 (1 - 1/g) b
  collective-permute                         b
"""

from collections.abc import Iterable
import dataclasses
import math
import re

KINDS = ("all-gather", "reduce-scatter", "all-reduce", "all-to-all", "collective-permute")
DTYPE_BYTES = {"pred": 1, "s8": 1, "u8": 1, "s16": 2, "u16": 2, "f16": 2, "bf16": 2, "s32": 4, "u32": 4, "f32": 4,
               "s64": 8, "u64": 8, "f64": 8, "c64": 8, "c128": 16, "f8e4m3fn": 1, "f8e5m2": 1, "s4": 1, "u4": 1}

_COMPUTATION = re.compile(r"^(?:ENTRY )?%(\S+) \(.*\{\s*$")
_INSTRUCTION = re.compile(r"^\s*(?:ROOT )?%(\S+) = (.*?) ([a-z][a-z0-9-]*)\((.*)$")
_ARRAY = re.compile(r"\b([a-z]+[0-9]*)\[([0-9,]*)\]")
_CALLS = re.compile(r"\b(?:calls|to_apply|body|condition|true_computation|false_computation)=%([\w.\-]+)")
_BRANCHES = re.compile(r"\bbranch_computations=\{([^}]*)\}")
_CHANNEL = re.compile(r"\bchannel_id=(\d+)")
_OP_NAME = re.compile(r'op_name="([^"]*)"')
_KNOWN_TRIPS = re.compile(r'"known_trip_count":\{"n":"(\d+)"\}')
_MESH_GROUPS = re.compile(r"replica_groups=mesh\[([^\]]*)\](?:, device_ids=\S+)?\s*\{([^}]*)\}")
_IOTA_GROUPS = re.compile(r"replica_groups=\[(\d+),(\d+)\]")
_LIST_GROUPS = re.compile(r"replica_groups=\{\{([^}]*)\}")


@dataclasses.dataclass(frozen=True)
class Collective:
  kind: str  # one of KINDS
  shapes: tuple[str, ...]  # the result, e.g. ('f32[30522,1024]',) (several where the compiler combined collectives)
  data_bytes: int  # bytes of the data: the result, a reduce-scatter's input (group x its result)
  group: int  # devices taking part together (2 for a collective-permute: a sender and a receiver)
  count: int  # times one step runs it (the trip counts of the loops around it)
  op_name: str  # the JAX operation it serves (the HLO's metadata), e.g. .../mlm_head/word_embeddings.attend/dot_general
  replaces: str = ""  # a windowed einsum's permutes: the collective they replace ("all-gather", "reduce-scatter")
  trips_known: bool = True  # False: inside a loop whose trip count could not be read, counted once

  @property
  def sent_bytes(self) -> float:
    """Bytes each device sends per step (module docstring)."""
    g = self.group
    factor = {"all-reduce": 2 * (1 - 1 / g), "collective-permute": 1.0}.get(self.kind, 1 - 1 / g)
    return self.count * factor * self.data_bytes


def _arrays(text: str) -> list[tuple[str, tuple[int, ...]]]:
  return [(dtype, tuple(int(d) for d in dims.split(",") if d)) for dtype, dims in _ARRAY.findall(text)
          if dtype in DTYPE_BYTES]


def _bytes(arrays: Iterable[tuple[str, tuple[int, ...]]]) -> int:
  return sum(DTYPE_BYTES[dtype] * math.prod(dims) for dtype, dims in arrays)


def _shape_text(arrays) -> tuple[str, ...]:
  return tuple(f"{dtype}[{','.join(map(str, dims))}]" for dtype, dims in arrays)


def _group_size(attributes: str, kind: str) -> int:
  if kind == "collective-permute":
    return 2
  mesh = _MESH_GROUPS.search(attributes)
  if mesh:
    sizes = dict(re.findall(r"'([^']+)'=(\d+)", mesh.group(1)))
    return math.prod(int(sizes[a]) for a in re.findall(r"'([^']+)'", mesh.group(2)))
  iota = _IOTA_GROUPS.search(attributes)
  if iota:
    return int(iota.group(2))
  listed = _LIST_GROUPS.search(attributes)
  if listed:
    return len([x for x in listed.group(1).split(",") if x.strip()])
  return 1


@dataclasses.dataclass
class _Instruction:
  name: str
  shape: str
  opcode: str
  rest: str  # operands and attributes


def _parse(text: str) -> tuple[dict[str, list[_Instruction]], str | None]:
  computations: dict[str, list[_Instruction]] = {}
  entry = current = None
  for line in text.splitlines():
    if current is None:
      match = _COMPUTATION.match(line)
      if match:
        current = match.group(1)
        computations[current] = []
        if line.startswith("ENTRY"):
          entry = current
      continue
    if line.startswith("}"):
      current = None
      continue
    match = _INSTRUCTION.match(line)
    if match:
      computations[current].append(_Instruction(*match.groups()))
  return computations, entry


def _constant(instruction: _Instruction | None) -> int | None:
  if instruction is None or instruction.opcode != "constant":
    return None
  value = re.match(r"(-?\d+)\)", instruction.rest)
  return int(value.group(1)) if value else None


def _operands(instruction: _Instruction) -> list[str]:
  return re.findall(r"%([\w.\-]+)", instruction.rest.split(")")[0])


def _trip_count(condition: list[_Instruction], body: list[_Instruction], start: dict[int, int]) -> int | None:
  """(N - start) / step for a condition `get-tuple-element(param, index=i) < constant(N)` and a body that adds a
  constant step to element i; None for any other shape."""
  by_name = {i.name: i for i in condition}
  root = next((i for i in reversed(condition) if i.opcode == "compare"), None)
  if root is None or "direction=LT" not in root.rest or len(_operands(root)) != 2:
    return None
  counter, limit = (by_name.get(name) for name in _operands(root))
  found = re.search(r"index=(\d+)", counter.rest) if counter is not None else None
  end = _constant(limit)
  if counter is None or counter.opcode != "get-tuple-element" or not found or end is None:
    return None
  index = int(found.group(1))
  step = 1
  body_by_name = {i.name: i for i in body}
  root_tuple = body[-1] if body and body[-1].opcode == "tuple" else None
  elements = _operands(root_tuple) if root_tuple else []
  update = body_by_name.get(elements[index]) if index < len(elements) else None
  if update is not None and update.opcode == "add":
    steps = [_constant(body_by_name.get(name)) for name in _operands(update)]
    step = next((s for s in steps if s is not None), 1)
  trips = -(-(end - start.get(index, 0)) // step) if step > 0 else None
  return trips


def _loop_start(computation: list[_Instruction], while_op: _Instruction) -> dict[int, int]:
  """The constant initial values of a while loop's tuple elements, by index (where the tuple is built in place)."""
  by_name = {i.name: i for i in computation}
  operand = re.match(r"%([\w.\-]+)", while_op.rest)
  tuple_op = by_name.get(operand.group(1)) if operand else None
  if tuple_op is None or tuple_op.opcode != "tuple":
    return {}
  values = {index: _constant(by_name.get(name)) for index, name in enumerate(_operands(tuple_op))}
  return {index: value for index, value in values.items() if value is not None}


def _multiplicities(computations: dict[str, list[_Instruction]], entry: str) -> tuple[dict, dict, set]:
  """How many times a step runs each computation, the windowed-einsum kind each loop body replaces, and the
  computations inside a loop of unknown trip count."""
  callees: dict[str, list[tuple[str, int | None]]] = {name: [] for name in computations}
  replaces: dict[str, str] = {}
  for name, instructions in computations.items():
    for instruction in instructions:
      called = _CALLS.findall(instruction.rest)
      for branches in _BRANCHES.findall(instruction.rest):
        called += re.findall(r"%([\w.\-]+)", branches)
      trips: int | None = 1
      if instruction.opcode == "while":
        body_match = re.search(r"\bbody=%([\w.\-]+)", instruction.rest)
        condition_match = re.search(r"\bcondition=%([\w.\-]+)", instruction.rest)
        assert body_match and condition_match, instruction.rest  # an HLO while names both computations
        body, condition = body_match.group(1), condition_match.group(1)
        known = _KNOWN_TRIPS.search(instruction.rest)  # XLA:CPU and GPU write it down; a TPU compiler does not
        trips = int(known.group(1)) if known else _trip_count(computations.get(condition, []), computations.get(
            body, []), _loop_start(instructions, instruction))
        kind = re.search(r"windowed_dot_general_body_(ag|rs)", body)
        if kind:
          replaces[body] = {"ag": "all-gather", "rs": "reduce-scatter"}[kind.group(1)]
      callees[name] += [(c, trips) for c in called if c in computations]
  count: dict[str, int] = {}
  unknown: set[str] = set()
  inherited: dict[str, str] = {}

  def visit(name: str, times: int, uncertain: bool, replaced: str) -> None:
    count[name] = count.get(name, 0) + times
    if uncertain:
      unknown.add(name)
    replaced = replaces.get(name, replaced)
    if replaced:
      inherited[name] = replaced
    for callee, trips in callees[name]:
      visit(callee, times * (trips if trips else 1), uncertain or trips is None or trips <= 0, replaced)

  visit(entry, 1, False, "")
  return count, inherited, unknown


def _gathers(all_reduce: _Instruction, computation: dict[str, _Instruction],
             computations: dict[str, list[_Instruction]]) -> bool:
  """An all-reduce of arrays each written into zeros at the device's offset (dynamic-update-slice, maybe fused, copied
  or bitcast on the way): an all-gather the compiler does as an all-reduce."""
  def writes_a_slice(instruction: _Instruction | None, scope: dict[str, _Instruction], depth: int = 0) -> bool:
    if instruction is None or depth > 4:
      return False
    if instruction.opcode == "dynamic-update-slice":
      return True
    if instruction.opcode in ("copy-done", "copy-start", "copy", "bitcast"):
      operands = _operands(instruction)
      return bool(operands) and writes_a_slice(scope.get(operands[0]), scope, depth + 1)
    if instruction.opcode == "fusion":
      called = _CALLS.search(instruction.rest)
      body = computations.get(called.group(1), []) if called else []
      return bool(body) and writes_a_slice(body[-1], {i.name: i for i in body}, depth + 1)
    return False

  operands = _operands(all_reduce)
  return bool(operands) and all(writes_a_slice(computation.get(name), computation) for name in operands)


def collectives(hlo_text: str) -> list[Collective]:
  """Every collective of an optimized HLO module, once per channel, with the times a step runs it."""
  computations, entry = _parse(hlo_text)
  if entry is None:
    return []
  count, replaced, unknown = _multiplicities(computations, entry)
  by_name = {name: {i.name: i for i in instructions} for name, instructions in computations.items()}
  found: dict[tuple, Collective] = {}
  for name, instructions in computations.items():
    if name not in count:
      continue
    for instruction in instructions:
      kind = instruction.opcode.removesuffix("-start")
      if kind not in KINDS:
        continue
      if kind == "all-reduce" and name.startswith("all-reduce-scatter"):
        kind = "reduce-scatter"
      arrays = _arrays(instruction.shape)
      if instruction.opcode in ("all-gather-start", "all-to-all-start"):  # (operands, results)
        arrays = arrays[len(arrays) // 2:]
      elif instruction.opcode == "reduce-scatter-start":  # (operands, results) on a GPU: the operands, its input
        arrays = arrays[:len(arrays) // 2]
      elif instruction.opcode == "collective-permute-start":  # (operand, result, contexts)
        arrays = arrays[:1]
      group = _group_size(instruction.rest, kind)
      scattered = kind == "reduce-scatter" and instruction.opcode == "reduce-scatter"
      data_bytes = _bytes(arrays) * (group if scattered else 1)  # a reduce-scatter's input
      replaces = replaced.get(name, "") if kind == "collective-permute" else ""
      if kind == "all-reduce" and _gathers(instruction, by_name[name], computations):
        replaces = "all-gather"
      op_name = _OP_NAME.search(instruction.rest)
      channel = _CHANNEL.search(instruction.rest)
      # the compiler numbers some fusions' channels anew (two all-reduce-scatters with channel 1): the shapes tell
      key = (kind, channel.group(1), _shape_text(arrays)) if channel else (name, instruction.name)
      collective = Collective(
          kind=kind, shapes=_shape_text(arrays), data_bytes=data_bytes, group=group, count=count[name],
          op_name=op_name.group(1) if op_name else "", replaces=replaces, trips_known=name not in unknown)
      if key not in found or collective.count < found[key].count:  # a piece may overlap a loop: the start's count
        found[key] = collective
  windowed = {(c.op_name, c.shapes): c.replaces for c in found.values() if c.replaces}
  return [dataclasses.replace(c, replaces=windowed.get((c.op_name, c.shapes), ""))
          if c.kind == "collective-permute" and not c.replaces else c for c in found.values()]


def summary(found: Iterable[Collective]) -> dict[str, dict]:
  """By kind: {'count': ops run per step, 'data_bytes': their data, 'sent_bytes': bytes each device sends}."""
  result = {kind: {"count": 0, "data_bytes": 0, "sent_bytes": 0.0} for kind in KINDS}
  for c in found:
    entry = result[c.kind]
    entry["count"] += c.count
    entry["data_bytes"] += c.count * c.data_bytes
    entry["sent_bytes"] += c.sent_bytes
  return result


def roles(found: Iterable[Collective]) -> dict[str, float]:
  """Bytes each device sends per step by what the collective does for FSDP, whatever the compiler made of it:
  'gather' (all-gathers, and permutes replacing one), 'reduce' (reduce-scatters and all-reduces, and permutes
  replacing a reduce-scatter), 'other' (all-to-alls, other permutes)."""
  result = {"gather": 0.0, "reduce": 0.0, "other": 0.0}
  for c in found:
    kind = c.replaces or c.kind
    role = {"all-gather": "gather", "reduce-scatter": "reduce", "all-reduce": "reduce"}.get(kind, "other")
    result[role] += c.sent_bytes
  return result
