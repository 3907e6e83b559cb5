"""For mypy only: each registered family module assigned to the Protocols it must satisfy
(bert_jax/models/protocol.py), so that a member missing or of the wrong type is a type error. Nothing imports this
module (it imports them all); tests/test_protocols.py checks the same at run time."""

from bert_jax.models import bart, bert, electra, gpt2, spanbert, t5, xlnet
from bert_jax.models.protocol import FamilyModule, PositionTable

_families: tuple[FamilyModule, ...] = (bert, xlnet, t5, electra, spanbert, gpt2, bart)
_position_tables: tuple[PositionTable, ...] = (bert, electra, spanbert, gpt2, bart)
