"""JSON text from a file that may come from anyone, measured before it is parsed."""
import re

import numpy as np

# a JSON string, or an unterminated one to the end (so that each match consumes what it scanned: linear)
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\[\s\S][^"\\]*)*"?')


def nesting(text):
    """The deepest nesting of brackets in JSON `text` (str, or UTF-8 bytes: UnicodeDecodeError
    otherwise), strings left out, counted before parsing: json.loads recurses once per level, and
    how deep it may go depends on the interpreter's recursion limit, which a framework may have
    raised (Jittor sets 1e6: a file of a few MB of '[' would then overflow the C stack instead of
    raising RecursionError)."""
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    brackets = np.frombuffer(_JSON_STRING.sub("", text).encode("utf-8"), np.uint8)
    step = (brackets == ord("[")).astype(np.int64) + (brackets == ord("{")) - (brackets == ord("]")) - (brackets == ord("}"))
    return int(step.cumsum().max(initial=0))
