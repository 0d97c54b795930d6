namespace Deid.Evaluation;
