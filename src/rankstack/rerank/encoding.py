"""Compatibility re-exports: :mod:`rankstack.rerank.encoding` was split (issue 9.6) into

* :mod:`rankstack.rerank.tokens` - special-token layouts, token budgets, :class:`PairEncoder`;
* :mod:`rankstack.rerank.batching` - length-sorted dynamic-padding batches (:func:`run_batched`);
* :mod:`rankstack.rerank.runtime` - threads / dtype / device settings, fp32 scoring heads;
* :mod:`rankstack.hf_loading` - the one Hugging Face loading and dtype path.

Import from those modules; this one only keeps older imports working during the transition.
"""

from rankstack.hf_loading import (  # noqa: F401
    DTYPES,
    check_model_path,
    cpu_flags,
    cpu_has_bf16,
    load_pretrained,
    load_tokenizer,
    resolve_dtype,
)
from rankstack.rerank.batching import (  # noqa: F401
    Batch,
    PaddingSide,
    pad_batch,
    run_batched,
    sorted_batches,
)
from rankstack.rerank.runtime import DType, RuntimeSettings, apply_threads  # noqa: F401
from rankstack.rerank.tokens import (  # noqa: F401
    DEFAULT_DOC_LENGTH,
    DEFAULT_QUERY_LENGTH,
    Encoded,
    PairEncoder,
    SpecialLayout,
    TruncationCounts,
    model_max_length,
)
