"""What a run can be: tasks and models by name. Kept apart from training/ml.py so that the web
process and the listing workers never load scikit-learn just to validate a request."""

CLASSIFICATION, REGRESSION = "classification", "regression"
LOGISTIC_REGRESSION, RIDGE = "logistic_regression", "ridge"
RANDOM_FOREST, HIST_GRADIENT_BOOSTING = "random_forest", "hist_gradient_boosting"
MODELS = {
    CLASSIFICATION: (LOGISTIC_REGRESSION, RANDOM_FOREST, HIST_GRADIENT_BOOSTING),
    REGRESSION: (RIDGE, RANDOM_FOREST, HIST_GRADIENT_BOOSTING),
}
# An integer target with at most this many distinct values is read as class labels.
MAX_CLASSES_FOR_INTEGER_TARGET = 20
