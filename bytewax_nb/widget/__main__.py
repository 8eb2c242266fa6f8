"""`python -m bytewax_nb.widget > labextension/src/state.ts`: the front-end's types,
made from the kernel's (see `state`)."""

from .state import typescript

print(typescript(), end="")
