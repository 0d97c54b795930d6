namespace Deid.Evaluation;

/// <summary>Mean ± (population) standard deviation of the defined values; Count says how many were defined.</summary>
public sealed record MeanStd(double? Mean, double? Std, double? Min, double? Max, int Count)
{
    public static MeanStd Of(IEnumerable<double?> values) => Of(values.Where(v => v.HasValue && double.IsFinite(v.Value)).Select(v => v!.Value));

    public static MeanStd Of(IEnumerable<double> values)
    {
        var list = values.Where(double.IsFinite).ToList();
        if (list.Count == 0) return new MeanStd(null, null, null, null, 0);
        var mean = list.Average();
        var std = Math.Sqrt(list.Sum(v => (v - mean) * (v - mean)) / list.Count);
        return new MeanStd(mean, std, list.Min(), list.Max(), list.Count);
    }

    public override string ToString() => Mean is null ? "n/a" : $"{Mean:0.###} ± {Std:0.###}";
}
