"""The web UI (`prodcat ui`): the annotation queue and the visual-similarity evaluation.

Server-rendered pages (Jinja2) with a little plain JavaScript, every asset served by the app.
:mod:`prodcat.serving.web.app` builds the FastAPI app; :mod:`prodcat.serving.web.server`
wires it to Kafka, Milvus
and the image embedder and runs it.
"""
