"""The teaching helpers of the notebooks: feature analysis, figures and the exercises' self-checks."""
