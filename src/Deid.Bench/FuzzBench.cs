using System.Diagnostics;
using System.Text.Json;
using Deid.TestSupport.Fuzz;

namespace Deid.Bench;

/// <summary>
/// `make bench ARGS=fuzz`: the seeded fuzz corpus of the test suite (same generator, same seed), 500 cases
/// (DEID_FUZZ_CASES to change), through the real deid executable, two at a time. Table rows: how the cases ended;
/// bench/fuzz.json: every case (kind, what was damaged, exit code, message) and the failing ones' details.
/// </summary>
public static class FuzzBench
{
    public const int Seed = 12;

    public static void Run(BenchResults r)
    {
        var clip = Path.Combine(Suites.Shared, "media", "videos", "talk_small.mp4");
        if (!File.Exists(clip)) { Console.Error.WriteLine($"skip fuzz: {clip} not found"); return; }
        var count = int.TryParse(Environment.GetEnvironmentVariable("DEID_FUZZ_CASES"), out var n) && n > 0 ? n : 500;
        var firstId = int.TryParse(Environment.GetEnvironmentVariable("DEID_FUZZ_FIRST"), out var f0) && f0 >= 0 ? f0 : 0;
        using var tmp = new BenchTemp();
        var seeds = FuzzCorpus.MakeSeeds(clip, tmp.File("seeds"));
        // DEID_FUZZ_KEEP=DIR: also save every case's input there, to reproduce one by hand
        var keep = Environment.GetEnvironmentVariable("DEID_FUZZ_KEEP");
        if (keep is { Length: > 0 }) Directory.CreateDirectory(keep);
        var runner = Suites.DeidRunner(TimeSpan.FromMinutes(3));
        var outcomes = new FuzzOutcome[count];
        var times = new double[count];
        var done = 0;
        var sw = Stopwatch.StartNew();
        Parallel.ForEach(FuzzCorpus.Generate(Seed, seeds, count, firstId), new ParallelOptions { MaxDegreeOfParallelism = Math.Max(1, Environment.ProcessorCount) }, c =>
        {
            if (keep is { Length: > 0 }) File.WriteAllBytes(Path.Combine(keep, c.FileName), c.Data);
            var t = Stopwatch.StartNew();
            outcomes[c.Id - firstId] = runner.Run(c, tmp.Path);
            times[c.Id - firstId] = t.Elapsed.TotalSeconds;
            var k = Interlocked.Increment(ref done);
            if (!outcomes[c.Id - firstId].Ok) Console.Error.WriteLine($"fuzz FAIL {outcomes[c.Id - firstId].Summary}");
            if (k % 25 == 0) Console.Error.WriteLine($"fuzz: {k}/{count} cases, {sw.Elapsed.TotalMinutes:F1} min");
        });

        r.Add(new("fuzz", "cases", count, "cases", new() { ["seed"] = Seed, ["first"] = firstId }));
        r.Add(new("fuzz", "exit 0, complete output", outcomes.Count(o => o.Ok && o.ExitCode == 0), "cases"));
        r.Add(new("fuzz", "exit 1, one line", outcomes.Count(o => o.Ok && o.ExitCode == 1), "cases"));
        r.Add(new("fuzz", "failed (hang, trace, partial file, wrong frames)", outcomes.Count(o => !o.Ok), "cases"));
        r.Add(new("fuzz", "slowest case", times.Max(), "s"));
        var path = Path.Combine(Suites.RepoRoot, "bench", "fuzz.json");
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        File.WriteAllText(path, JsonSerializer.Serialize(new
        {
            seed = Seed,
            cases = outcomes.Select((o, i) => new
            {
                id = o.Case.Id, seedFile = o.Case.Seed, kind = o.Case.Kind, damage = o.Case.Description, exit = o.ExitCode,
                ok = o.Ok, problem = o.Problem, message = o.StdErr.Trim(), outputFrames = o.OutputFrames, inputFrames = o.InputFrames, seconds = times[i],
            }),
            byKind = outcomes.GroupBy(o => o.Case.Kind).ToDictionary(g => g.Key, g => new
            {
                exit0 = g.Count(o => o.Ok && o.ExitCode == 0), exit1 = g.Count(o => o.Ok && o.ExitCode == 1), failed = g.Count(o => !o.Ok),
            }),
        }, new JsonSerializerOptions { WriteIndented = true }));
        Console.WriteLine($"wrote {path}");
    }
}
