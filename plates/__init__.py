"""plates: teach a Qwen vision-language model to read vehicles and licence plates and answer in JSON.

One module per pipeline stage (dump -> records -> dataset -> run -> predictions -> report), each a few pure
functions with a thin CLI wrapper; ms-swift does the training, inference and serving.
"""

__version__ = "0.1.0"
