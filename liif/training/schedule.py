"""The original multi-step learning-rate schedule, written out so that both frameworks
(and resumed runs) use exactly the same value: epoch e (1-based) trains at
lr * gamma ** (number of milestones < e). MultiStepLR stepped once per epoch gives the
same, but re-creating it on resume applied the decays twice in the original code.
"""
from bisect import bisect_right


def learning_rate(epoch, lr, milestones, gamma):
    return lr * gamma ** bisect_right(sorted(milestones), epoch - 1)
