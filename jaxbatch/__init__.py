"""jaxbatch: measure what batch size, learning rate, schedules and weight decay do.

Every configuration of a comparison that shares array shapes trains at once,
inside one jit-compiled program with a leading *member* axis.
"""

__version__ = "0.1.0"
