"""What a run can be: tasks and models by name. Kept apart from training/ml.py so that the web
process and the listing workers never load scikit-learn just to validate a request."""

CLASSIFICATION, REGRESSION = "classification", "regression"
MODELS = {
    CLASSIFICATION: ("logistic_regression", "random_forest", "hist_gradient_boosting"),
    REGRESSION: ("ridge", "random_forest", "hist_gradient_boosting"),
}
# An integer target with at most this many distinct values is read as class labels.
MAX_CLASSES_FOR_INTEGER_TARGET = 20
