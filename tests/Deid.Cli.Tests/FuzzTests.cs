using Deid.TestSupport;
using Deid.TestSupport.Fuzz;

namespace Deid.Cli.Tests;

/// <summary>
/// The seeded fuzz corpus (issue 12): damaged copies of a real clip (bit flips, truncations, swapped and resized MP4
/// boxes, zeroed moov/mdat ranges) through the real `deid anonymize` process. Every case must end in time with exit 0
/// and a complete output of the frames ffmpeg can decode, or exit 1 and one stderr line; `make bench ARGS=fuzz` runs 500.
/// </summary>
public sealed class FuzzTests
{
    public const int Seed = 12;
    public const int Cases = 50;

    private static readonly Lazy<(string Dir, IReadOnlyList<string> Seeds)> Corpus = new(() =>
    {
        var dir = Path.Combine(Path.GetTempPath(), $"deid-fuzz-seeds-{Environment.ProcessId}");
        AppDomain.CurrentDomain.ProcessExit += (_, _) => { try { Directory.Delete(dir, true); } catch (IOException) { } };
        return (dir, FuzzCorpus.MakeSeeds(TestPaths.Video("talk_small.mp4"), dir));
    });

    /// <summary>Even and odd case ids: two test classes, so the two halves run in parallel (each case is one deid process).</summary>
    public static TheoryData<int> EvenCaseIds() => new(Enumerable.Range(0, Cases).Where(i => i % 2 == 0));
    public static TheoryData<int> OddCaseIds() => new(Enumerable.Range(0, Cases).Where(i => i % 2 == 1));

    [Fact]
    public void Corpus_IsReproducible()
    {
        if (!File.Exists(TestPaths.Video("talk_small.mp4"))) Assert.Skip("shared clip talk_small.mp4 missing");
        var seeds = Corpus.Value.Seeds;
        var a = FuzzCorpus.Generate(Seed, seeds, 16).ToList();
        var b = FuzzCorpus.Generate(Seed, seeds, 16).ToList();
        Assert.Equal(a.Select(c => c.Description), b.Select(c => c.Description));
        Assert.All(a.Zip(b), p => Assert.True(p.First.Data.AsSpan().SequenceEqual(p.Second.Data)));
        // every kind of damage is in the first cases, and each case differs from its seed
        Assert.Equal(FuzzCorpus.Kinds.Length, a.Take(FuzzCorpus.Kinds.Length * 2).Select(c => c.Kind).Where(FuzzCorpus.Kinds.Contains).Distinct().Count());
        Assert.All(a, c => Assert.False(c.Data.AsSpan().SequenceEqual(File.ReadAllBytes(seeds.First(s => Path.GetFileName(s) == c.Seed)))));
    }

    [Theory]
    [MemberData(nameof(EvenCaseIds))]
    public void DamagedInput_EndsCleanly(int id) => RunCase(id);

    internal static void RunCase(int id)
    {
        if (!File.Exists(TestPaths.Video("talk_small.mp4"))) Assert.Skip("shared clip talk_small.mp4 missing");
        var c = FuzzCorpus.Generate(Seed, Corpus.Value.Seeds, 1, first: id).Single();
        using var tmp = new TempDir();
        var outcome = FuzzRunner.BesideTests().Run(c, tmp.Path);
        Assert.True(outcome.Ok, outcome.Summary + "\nstderr: " + outcome.StdErr);
    }
}

/// <summary>The odd-numbered half of <see cref="FuzzTests"/>' corpus.</summary>
public sealed class FuzzTestsOdd
{
    [Theory]
    [MemberData(nameof(FuzzTests.OddCaseIds), MemberType = typeof(FuzzTests))]
    public void DamagedInput_EndsCleanly(int id) => FuzzTests.RunCase(id);
}
