"""The learner of the active-learning experiment: prodcat's feed-forward family on fixed features.

Active learning retrains after every round, hundreds of times per experiment, so the experiment uses
the FFN family (TF-IDF of title and brand → one ReLU layer → an exclusive softmax head and, when the
rule-based objective is on, a sigmoid head over every tree node) with the TF-IDF computed once for the
whole pool and trained full-batch on sparse tensors: seconds per fit instead of minutes. The
objectives are masked as in :mod:`prodcat.training.trainer`: only labelled products feed the exclusive loss;
the free rule labels of every pool product that has any feed the rule-based loss (a random sample of
``rule_batch`` of them per step) through the shared hidden layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
import tensorflow as tf
from sklearn.feature_extraction.text import TfidfVectorizer

Array = np.ndarray[Any, Any]


def _sparse(matrix: sp.spmatrix) -> tf.SparseTensor:
    coo = matrix.tocoo()
    indices = np.stack([coo.row, coo.col], axis=1).astype("int64")
    tensor = tf.SparseTensor(indices, coo.data.astype("float32"), coo.shape)
    return tf.sparse.reorder(tensor)


class TextFeatures:
    """TF-IDF (sublinear tf, word unigrams) fitted on the pool's texts only, never on test texts."""

    def __init__(self, pool_texts: Sequence[str]) -> None:
        self.vectorizer = TfidfVectorizer(sublinear_tf=True)
        self.pool = self.vectorizer.fit_transform(list(pool_texts)).tocsr()

    def transform(self, texts: Sequence[str]) -> sp.csr_matrix:
        return self.vectorizer.transform(list(texts)).tocsr()

    @property
    def dim(self) -> int:
        return int(self.pool.shape[1])


@dataclass(frozen=True)
class LearnerConfig:
    hidden: int = 256
    steps: int = 150
    learning_rate: float = 0.02
    weight_decay: float = 1e-5
    dropout: float = 0.3
    #: 0.1 of the summed node loss: at 1.0 the rule head crowds the shared layer (see
    #: docs/active-learning.md); the exclusive objective needs most of its 256 units.
    rule_weight: float = 0.1
    rule_batch: int = 1024


class FittedLearner:
    """Exclusive-class probabilities of a fitted learner."""

    def selection_proba(self, features: sp.spmatrix) -> Array:
        """The probabilities that choose the next labels: this model's own."""
        return self.predict_proba(features)

    def __init__(self, w1: tf.Variable, b1: tf.Variable, w2: tf.Variable, b2: tf.Variable) -> None:
        self._weights = (w1, b1, w2, b2)

    def predict_proba(self, features: sp.spmatrix, batch: int = 8192) -> Array:
        w1, b1, w2, b2 = self._weights
        parts = []
        for start in range(0, features.shape[0], batch):
            x = _sparse(features[start : start + batch])
            hidden = tf.nn.relu(tf.sparse.sparse_dense_matmul(x, w1) + b1)
            parts.append(tf.nn.softmax(hidden @ w2 + b2).numpy())
        return np.concatenate(parts) if parts else np.zeros((0, int(w2.shape[1])), "float32")


class FFNLearner:
    """Fits the two-headed FFN on a labelled subset of the pool (plus free rule labels if given)."""

    def __init__(
        self,
        pool: sp.csr_matrix,
        n_classes: int,
        rule_targets: Array | None = None,
        config: LearnerConfig | None = None,
    ) -> None:
        self.pool = pool
        self.n_classes = n_classes
        self.config = config or LearnerConfig()
        self._rules: tuple[sp.csr_matrix, Array] | None = None
        if rule_targets is not None:
            has = np.asarray(rule_targets).any(axis=1)
            self._rules = (pool[has], np.asarray(rule_targets, "float32")[has])

    def fit(self, labelled: Array, labels: Array, *, rules: bool, seed: int) -> FittedLearner:
        cfg = self.config
        tf.random.set_seed(seed)
        rng = np.random.default_rng(seed)
        init = tf.keras.initializers.GlorotUniform(seed)
        dim = self.pool.shape[1]
        w1 = tf.Variable(init((dim, cfg.hidden)))
        b1 = tf.Variable(tf.zeros(cfg.hidden))
        w2 = tf.Variable(init((cfg.hidden, self.n_classes)))
        b2 = tf.Variable(tf.zeros(self.n_classes))
        variables = [w1, b1, w2, b2]
        x_ex = _sparse(self.pool[np.asarray(labelled)])
        y_ex = tf.constant(np.asarray(labels, "int64"))
        use_rules = rules and self._rules is not None and self._rules[0].shape[0] > 0
        if use_rules:
            assert self._rules is not None
            rule_x, rule_y = self._rules
            w3 = tf.Variable(init((cfg.hidden, rule_y.shape[1])))
            b3 = tf.Variable(tf.zeros(rule_y.shape[1]))
            variables += [w3, b3]
        optimizer = tf.keras.optimizers.Adam(cfg.learning_rate)

        def hidden_of(x: tf.SparseTensor) -> tf.Tensor:
            h = tf.nn.relu(tf.sparse.sparse_dense_matmul(x, w1) + b1)
            return tf.nn.dropout(h, cfg.dropout) if cfg.dropout else h

        def eager_step(x_rule: tf.SparseTensor | None, y_rule: tf.Tensor | None) -> tf.Tensor:
            with tf.GradientTape() as tape:
                logits = hidden_of(x_ex) @ w2 + b2
                loss = tf.reduce_mean(
                    tf.keras.losses.sparse_categorical_crossentropy(y_ex, logits, from_logits=True)
                )
                if x_rule is not None and y_rule is not None:
                    rule_logits = hidden_of(x_rule) @ w3 + b3
                    bce = tf.nn.sigmoid_cross_entropy_with_logits(y_rule, rule_logits)
                    # Summed over nodes (a product has few positives among hundreds of nodes).
                    loss += cfg.rule_weight * tf.reduce_mean(tf.reduce_sum(bce, axis=1)) / 20.0
                loss += cfg.weight_decay * tf.reduce_sum(tf.square(w1))
            grads = tape.gradient(loss, variables)
            optimizer.apply_gradients(zip(grads, variables, strict=True))
            return loss

        step = tf.function(eager_step, reduce_retracing=True)
        for _ in range(cfg.steps):
            if use_rules:
                rows = rng.choice(rule_x.shape[0], min(cfg.rule_batch, rule_x.shape[0]), False)
                step(_sparse(rule_x[rows]), tf.constant(rule_y[rows]))
            else:
                step(None, None)
        return FittedLearner(w1, b1, w2, b2)


class WordCharFeatures:
    """TF-IDF of word 1-2-grams ⊕ character 2-5-grams (within words), sublinear tf, fitted on the
    pool's texts only: the features of the linear learner."""

    def __init__(self, pool_texts: Sequence[str]) -> None:
        texts = list(pool_texts)
        self.words = TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), min_df=1)
        self.chars = TfidfVectorizer(
            sublinear_tf=True, analyzer="char_wb", ngram_range=(2, 5), min_df=2
        )
        self.pool = sp.hstack(
            [self.words.fit_transform(texts), self.chars.fit_transform(texts)]
        ).tocsr()

    def transform(self, texts: Sequence[str]) -> sp.csr_matrix:
        items = list(texts)
        return sp.hstack([self.words.transform(items), self.chars.transform(items)]).tocsr()

    @property
    def dim(self) -> int:
        return int(self.pool.shape[1])


class EncodedFeatures:
    """Word ⊕ char TF-IDF with a pretrained encoder's unit vectors appended (weight ``weight``);
    ``tfidf_columns`` says where the TF-IDF part ends (a TF-IDF-only student reads that part)."""

    def __init__(self, pool_texts: Sequence[str], encoder: Any, weight: float = 1.0) -> None:
        self.tfidf = WordCharFeatures(pool_texts)
        self.encoder = encoder
        self.weight = weight
        self.tfidf_columns = self.tfidf.dim
        self.pool = self._join(self.tfidf.pool, list(pool_texts))

    def _join(self, tfidf: sp.csr_matrix, texts: list[str]) -> sp.csr_matrix:
        vectors = sp.csr_matrix(self.weight * self.encoder.encode(texts))
        return sp.hstack([tfidf, vectors]).tocsr()

    def transform(self, texts: Sequence[str]) -> sp.csr_matrix:
        items = list(texts)
        return self._join(self.tfidf.transform(items), items)

    @property
    def dim(self) -> int:
        return int(self.pool.shape[1])


def _softmax(scores: Array) -> Array:
    shifted = scores - scores.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return np.asarray(exp / exp.sum(axis=1, keepdims=True), dtype="float32")


class FittedLinear:
    """Class probabilities of a one-vs-rest linear SVM: a softmax over its decision values, with
    classes it never saw at probability 0. ``selector``: the model whose probabilities choose the
    next labels, when it is not this one (teacher-student: the teacher picks, the student is
    measured)."""

    def __init__(
        self,
        model: Any,
        classes: Array,
        n_classes: int,
        selector: FittedLinear | None = None,
        columns: int | None = None,
    ) -> None:
        self.model = model
        self.classes = classes
        self.n_classes = n_classes
        self.selector = selector
        self.columns = columns  # reads only the first ``columns`` features (a TF-IDF-only student)

    def predict_proba(self, features: sp.spmatrix) -> Array:
        if self.columns is not None:
            features = features[:, : self.columns]
        n = features.shape[0]
        if len(self.classes) == 1:
            scores = np.zeros((n, 1), "float64")
        else:
            scores = np.asarray(self.model.decision_function(features), "float64")
            if scores.ndim == 1:  # two classes: one decision value for the second
                scores = np.stack([-scores, scores], axis=1)
        full = np.full((n, self.n_classes), -1e9, "float64")
        full[:, self.classes] = scores
        return _softmax(full)

    def selection_proba(self, features: sp.spmatrix) -> Array:
        return (self.selector or self).predict_proba(features)


class LinearLearner:
    """LinearSVC (C=1) on word ⊕ char TF-IDF, fitted on the labelled rows only.

    ``teacher_student``: the fitted model (the teacher) labels every unlabelled pool row with its
    prediction, and a second LinearSVC (the student) is fitted on the human labels plus those
    pseudo-labels; the teacher's probabilities still choose the next labels. No rule-based
    objective: ``rules`` is ignored.

    ``prototypes``: one feature row per class, made from the class's own name in the taxonomy
    (:func:`~prodcat.training.taxonomy.class_name_text`), added to every fit as a labelled example of weight
    ``prototype_weight``. The taxonomy is known before any label is, so every class has an example
    from the start, also those no product was labelled with yet."""

    def __init__(
        self,
        pool: sp.csr_matrix,
        n_classes: int,
        *,
        teacher_student: bool = False,
        c: float = 1.0,
        student_columns: int | None = None,
        prototypes: sp.csr_matrix | None = None,
        prototype_weight: float = 1.0,
    ) -> None:
        self.pool = pool
        self.n_classes = n_classes
        self.teacher_student = teacher_student
        self.c = c
        self.student_columns = student_columns  # the student reads only these first columns
        if prototypes is not None and prototypes.shape[0] != n_classes:
            raise ValueError(f"{prototypes.shape[0]} prototypes for {n_classes} classes")
        self.prototypes = prototypes
        self.prototype_weight = prototype_weight

    def _fit(
        self, rows: Array, labels: Array, seed: int, columns: int | None = None
    ) -> FittedLinear:
        from sklearn.svm import LinearSVC

        x = self.pool[rows]
        weights = None
        if self.prototypes is not None:
            x = sp.vstack([x, self.prototypes]).tocsr()
            labels = np.concatenate([labels, np.arange(self.n_classes)])
            weights = np.ones(len(labels))
            weights[len(rows) :] = self.prototype_weight
        if columns is not None:
            x = x[:, :columns]
        classes = np.unique(labels)
        model = None
        if len(classes) > 1:
            model = LinearSVC(C=self.c, random_state=seed).fit(x, labels, sample_weight=weights)
            classes = np.asarray(model.classes_)
        return FittedLinear(model, classes, self.n_classes, columns=columns)

    def fit(self, labelled: Array, labels: Array, *, rules: bool, seed: int) -> FittedLinear:
        labelled, labels = np.asarray(labelled), np.asarray(labels, "int64")
        teacher = self._fit(labelled, labels, seed)
        if not self.teacher_student:
            return teacher
        rest = np.setdiff1d(np.arange(self.pool.shape[0]), labelled)
        pseudo = teacher.predict_proba(self.pool[rest]).argmax(axis=1)
        student = self._fit(
            np.concatenate([labelled, rest]),
            np.concatenate([labels, pseudo]),
            seed,
            self.student_columns,
        )
        student.selector = teacher
        return student
