// make bench: each suite appends rows; the table is printed and bench/results.json written at the end.
namespace Deid.Bench;

public static class Program
{
    public static int Main(string[] args)
    {
        Deid.Media.NativeMemory.TuneForStreaming();
        Deid.Media.OpenCvThreads.TuneForStreaming();
        if (Deid.Models.TorchSharpLifetimes.Problem is { } unsafeTorch)
        {
            Console.Error.WriteLine($"bench: {unsafeTorch}");
            return 1;
        }
        if (args is ["--child-rss", var input, var output, var mode]) return PipelineBench.ChildRss(input, output, mode);
        if (args is ["--child-detector", var i, var o, var detector]) return DetectorBench.Child(i, o, detector);
        if (args is ["--child-ssd-cpu", var clip]) return DetectorBench.ChildSsdCpu(clip);
        var results = new BenchResults();
        var only = args.Length > 0 ? args.ToHashSet(StringComparer.OrdinalIgnoreCase) : null;
        // Suites register in Suites.All.
        foreach (var (name, run) in Suites.All)
            if (only == null ? !Suites.OnlyByName.Contains(name) : only.Contains(name)) run(results);
        results.PrintTable();
        results.WriteJson(Path.Combine(Suites.RepoRoot, "bench", "results.json"));
        return 0;
    }
}
