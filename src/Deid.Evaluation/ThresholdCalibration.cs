using Deid.Faces;
namespace Deid.Evaluation;

/// <summary>The same-person threshold and how well it separates same from different pairs of the calibration set.</summary>
public sealed record ThresholdInfo(
    double Threshold, double Accuracy, double BalancedAccuracy, int SamePairs, int DifferentPairs,
    double SameMean, double DifferentMean, int People, int Images, string Source);

public static class ThresholdCalibration
{
    /// <summary>
    /// Scores every pair of embeddings and picks the cosine threshold that maximises balanced accuracy
    /// ((TPR + TNR) / 2): with 8 people × 5 images there are ~9× more different pairs than same pairs, and plain
    /// accuracy would reward a threshold that calls almost everyone "different".
    /// </summary>
    public static ThresholdInfo Calibrate(IReadOnlyList<(string Person, float[] Embedding)> items, string source)
    {
        var same = new List<double>();
        var diff = new List<double>();
        for (var i = 0; i < items.Count; i++)
            for (var j = i + 1; j < items.Count; j++)
            {
                var s = OnnxFaceRecognizer.Cosine(items[i].Embedding, items[j].Embedding);
                (items[i].Person == items[j].Person ? same : diff).Add(s);
            }
        if (same.Count == 0 || diff.Count == 0)
            throw new InvalidOperationException($"calibration needs at least two people with two images each ({source})");

        var candidates = same.Concat(diff).Order().ToArray();
        double bestT = 0, bestBal = -1, bestAcc = 0;
        for (var k = 0; k <= candidates.Length; k++)
        {
            var t = k == 0 ? candidates[0] - 1e-6 : k == candidates.Length ? candidates[^1] + 1e-6 : (candidates[k - 1] + candidates[k]) / 2;
            var tp = same.Count(s => s >= t);
            var tn = diff.Count(s => s < t);
            var bal = 0.5 * ((double)tp / same.Count + (double)tn / diff.Count);
            if (bal > bestBal + 1e-12)
            {
                bestBal = bal; bestT = t; bestAcc = (double)(tp + tn) / (same.Count + diff.Count);
            }
        }
        var people = items.Select(i => i.Person).Distinct().Count();
        return new ThresholdInfo(bestT, bestAcc, bestBal, same.Count, diff.Count, same.Average(), diff.Average(), people, items.Count, source);
    }
}
