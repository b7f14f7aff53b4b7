"""The project's own errors: the only exceptions the CLI treats as the user's to fix.

Each is raised where the bad input is detected, with a message that says what is wrong and
how to fix it; `python run.py` prints it as one line (`error: ...`) and exits with status 2.
Any other exception is a bug (or a failure of the machine) and keeps its traceback (exit 1).

Each class also derives from the built-in exception a Python caller would expect
(`DataLayoutError` is a `FileNotFoundError`, `ImageError` a `ValueError` ...), so code that
catches the built-in one keeps working.
"""


class LiifError(Exception):
    """Something the user can fix: the message says what and how."""




class ConfigError(LiifError, ValueError):
    """An impossible or unsupported setting (a negative batch size, an unknown device ...)."""


class BadInput(LiifError, ValueError):
    """A bad argument or input file that is not a dataset, image or checkpoint (an output size ...)."""


class InputTooLarge(BadInput):
    """An input over a size limit (an uploaded image with more pixels than the viewer takes)."""


class UnknownName(LiifError, KeyError):
    """A name that no registry knows (a model, a dataset wrapper); the message lists the known ones."""

    def __str__(self):  # KeyError's str() is the quoted repr of its argument
        return str(self.args[0]) if self.args else ""


class DataLayoutError(LiifError, FileNotFoundError):
    """A dataset folder is missing; the message names it and shows the expected layout."""


class DataError(LiifError, ValueError):
    """A dataset folder whose contents cannot be used (no images, unpaired LR/HR files, a non-image file ...)."""


class SampleSetError(LiifError, FileExistsError):
    """The sample set's folder exists but does not hold a complete sample set."""


class ImageError(LiifError, ValueError):
    """An image file that cannot be read (corrupt, truncated, not an image)."""


class CheckpointError(LiifError, ValueError):
    """A checkpoint that is missing, unreadable, or holds another model than asked for."""


class OutputError(LiifError):
    """A result file that cannot be written where asked (a folder, the input itself, a special file ...)
    or that the machine refuses to write (a full disk, a read-only file system); see liif/io/outputs.py."""


class RunDirError(LiifError, RuntimeError):
    """The run directory is in use by another run, already holds a finished one, or holds what no run
    writes (a link out of it, an overrides file that is no list of overrides: liif/run/untrusted.py)."""


class FrameworkError(LiifError, RuntimeError):
    """A framework or device that is not available here (not installed, no GPU, no MPI)."""


class NotEnoughMemory(LiifError):
    """The work asked for needs more memory than the machine has available (checked before allocating it,
    liif/inference/memory.py)."""


class BudgetTooSmall(LiifError):
    """A memory budget (`max_memory`) too small for the work: the message names the minimum."""


class TrainingDiverged(LiifError, ArithmeticError):
    """The training loss became NaN or infinite."""


# What to lower when memory runs out, named in the CLI's out-of-memory message.
MEMORY_SETTINGS = ("train.batch_size (training)", "eval_bsize (queries decoded at once at test and demo time)",
                   "infer.max_memory (test and demo: the input is processed in tiles within it)")


def is_out_of_memory(error):
    """CPU MemoryError, or a CUDA out-of-memory error (torch.cuda.OutOfMemoryError, or the
    'out of memory' RuntimeError of older PyTorch and of Jittor)."""
    if isinstance(error, MemoryError):
        return True
    name = type(error).__name__
    return name == "OutOfMemoryError" or (isinstance(error, RuntimeError) and "out of memory" in str(error).lower()
                                          and "cuda" in str(error).lower())
