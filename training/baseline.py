"""The baseline a user would pick instead of prodcat's models: TF-IDF + LinearSVC on product titles.

Run by the same command, on the same protocol split, as the models it is compared with.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.metrics import accuracy_score, f1_score
from sklearn.svm import LinearSVC

from prodcat.training.dataset import Example, Split


@dataclass(frozen=True)
class BaselineResult:
    level: int
    accuracy: float
    macro_f1: float
    train_size: int
    test_size: int
    seconds: float


def baseline_text(example: Example) -> str:
    """The baseline's input: the title (brand adds nothing measurable; category text is the label)."""
    return example.title


def tfidf_linearsvc(split: Split, *, c: float = 1.0) -> BaselineResult:
    """Fit on ``split.train``, score on ``split.test`` (scikit-learn defaults otherwise)."""
    started = time.perf_counter()
    vectorizer = TfidfVectorizer()
    features = vectorizer.fit_transform([baseline_text(e) for e in split.train])
    classifier = LinearSVC(C=c).fit(features, list(split.train_labels))
    predicted = classifier.predict(vectorizer.transform([baseline_text(e) for e in split.test]))
    truth = list(split.test_labels)
    return BaselineResult(
        level=split.level,
        accuracy=float(accuracy_score(truth, predicted)),
        macro_f1=float(f1_score(truth, predicted, average="macro")),
        train_size=len(split.train),
        test_size=len(split.test),
        seconds=time.perf_counter() - started,
    )
