using Deid.TestSupport;

namespace Deid.Cli.Tests;

/// <summary><c>deid generate-dataset</c> and <c>deid train</c> on bad input: one stderr line, exit code 1, nothing written.</summary>
public sealed class TrainCliTests : IDisposable
{
    private readonly TempDir _tmp = new();

    public void Dispose() => _tmp.Dispose();

    private static string OneErrorLine((int Code, string StdOut, string StdErr) r) => DeidCli.OneErrorLine(r, code: 1);

    [Fact]
    public void Generate_dataset_with_a_missing_or_non_stylegan_generator_fails_in_one_line_and_writes_nothing()
    {
        var outDir = _tmp.File("ds");
        Assert.Contains("generator file not found", OneErrorLine(RunDeid("generate-dataset", "--generator", _tmp.File("nope.safetensors"), "--count", "4", "-o", outDir)));
        var notG = _tmp.File("notg.safetensors");
        File.WriteAllText(notG, "not a generator at all");
        Assert.Contains("is not a StyleGAN2 generator", OneErrorLine(RunDeid("generate-dataset", "--generator", notG, "--count", "4", "-o", outDir)));
        Assert.False(Directory.Exists(outDir));
    }

    [Fact]
    public void Train_on_a_missing_empty_or_foreign_dataset_folder_fails_in_one_line()
    {
        var g = _tmp.File("g.safetensors");
        Assert.Contains("dataset folder not found", OneErrorLine(RunDeid("train", "--data", _tmp.File("none"), "--generator", g, "-o", _tmp.File("run"))));
        Directory.CreateDirectory(_tmp.File("empty"));
        Assert.Contains("is empty", OneErrorLine(RunDeid("train", "--data", _tmp.File("empty"), "--generator", g, "-o", _tmp.File("run"))));
        Directory.CreateDirectory(_tmp.File("foreign"));
        File.WriteAllText(_tmp.File("foreign/a.png"), "x");
        Assert.Contains("not a deid dataset", OneErrorLine(RunDeid("train", "--data", _tmp.File("foreign"), "--generator", g, "-o", _tmp.File("run"))));
        Assert.Contains("unknown config key 'lr'", OneErrorLine(RunDeid("train", "--data", _tmp.File("foreign"), "--generator", g, "-o", _tmp.File("run"), "--set", "lr=1")));
        Assert.False(Directory.Exists(_tmp.File("run")));
    }

    [Fact]
    public void Train_with_a_bad_yaml_or_json_config_names_the_key_in_one_line()
    {
        var g = _tmp.File("g.safetensors");
        File.WriteAllText(_tmp.File("c.yaml"), "batch_size: 2\nlr: 1\n");
        File.WriteAllText(_tmp.File("c.json"), """{ "batch_size": "two" }""");
        string Train(string config) => OneErrorLine(RunDeid("train", "--data", _tmp.File("none"), "--generator", g, "-o", _tmp.File("run"), "--config", config));
        Assert.Contains("unknown config key 'lr'", Train(_tmp.File("c.yaml")));
        Assert.Contains("batch_size must be an integer, got \"two\"", Train(_tmp.File("c.json")));
        Assert.False(Directory.Exists(_tmp.File("run")));
    }
}
