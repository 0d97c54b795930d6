using Deid.TestSupport;
using Xunit;

namespace Deid.Training.Tests;

/// <summary>The config file in JSON and in YAML: same keys, same values, the same one-line errors.</summary>
public class TrainingConfigTests : IDisposable
{
    private readonly TempDir _tmp = new();
    public void Dispose() => _tmp.Dispose();

    private string Write(string name, string text)
    {
        var p = _tmp.File(name);
        File.WriteAllText(p, text);
        return p;
    }

    private static TrainingConfigException Fails(Action load)
    {
        var e = Assert.Throws<TrainingConfigException>(load);
        Assert.DoesNotContain('\n', e.Message);
        return e;
    }

    [Fact]
    public void Json_and_yaml_files_with_the_same_keys_give_the_same_config()
    {
        var json = Write("c.json", """{ "batch_size": 2, "lr_g": 2e-5, "mapper_hidden": [64, 32], "identity_encoder": "face-api", "attr_init": null, "precision": "bf16" }""");
        var yaml = Write("c.yaml", """
            # the same run as c.json
            batch_size: 2
            lr_g: 2e-5
            mapper_hidden: [64, 32]
            identity_encoder: face-api
            attr_init: ~
            precision: "bf16"
            """);
        var block = Write("c.yml", "batch_size: 2\nlr_g: 0.00002\nmapper_hidden:\n  - 64\n  - 32\nidentity_encoder: 'face-api'\nprecision: bf16\n");
        var a = TrainingConfig.Load(json);
        Assert.Equal(2, a.BatchSize);
        Assert.Equal(2e-5, a.LrG);
        Assert.Equal(new long[] { 64, 32 }, a.MapperHidden);
        Assert.Equal("bf16", a.Precision);
        Assert.Equal(new TrainingConfig().LrD, a.LrD);   // keys not given keep the paper's defaults
        Assert.Empty(a.Differences(TrainingConfig.Load(yaml)));
        Assert.Empty(a.Differences(TrainingConfig.Load(block)));
        Assert.Empty(new TrainingConfig().Differences(TrainingConfig.Load(Write("empty.yaml", "# nothing set\n"))));
    }

    [Fact]
    public void Overrides_apply_over_a_yaml_file()
    {
        var cfg = TrainingConfig.Load(Write("c.yaml", "batch_size: 2\nsteps: 10\n"), ["steps=20", "lr-d=1e-4"]);
        Assert.Equal((2, 20L, 1e-4), (cfg.BatchSize, cfg.Steps, cfg.LrD));
    }

    [Theory]
    [InlineData("json", """{ "batch_size": 2, "lr": 1 }""", "unknown config key 'lr'")]
    [InlineData("yaml", "batch_size: 2\nlr: 1\n", "unknown config key 'lr'")]
    [InlineData("json", """{ "batch_size": "6" }""", "batch_size must be an integer, got \"6\"")]
    [InlineData("yaml", "batch_size: \"6\"\n", "batch_size must be an integer, got \"6\"")]
    [InlineData("json", """{ "lr_g": "fast" }""", "lr_g must be a number, got \"fast\"")]
    [InlineData("yaml", "lr_g: fast\n", "lr_g must be a number, got \"fast\"")]
    [InlineData("json", """{ "mapper_hidden": 64 }""", "mapper_hidden must be a list of integers, got 64")]
    [InlineData("yaml", "mapper_hidden: 64\n", "mapper_hidden must be a list of integers, got 64")]
    [InlineData("yaml", "identity_encoder: [irse50]\n", "identity_encoder must be a string, got [\"irse50\"]")]
    [InlineData("json", """{ "batch_size": 0 }""", "batch_size must be at least 1, got 0")]
    [InlineData("yaml", "batch_size: 0\n", "batch_size must be at least 1, got 0")]
    [InlineData("yaml", "precision: fp8\n", "precision must be fp32, bf16 or fp16, got 'fp8'")]
    [InlineData("json", """{ "batch_size": 2, """, "is not valid JSON")]
    [InlineData("yaml", "batch_size: 2\n  lr_g: [1\n", "is not valid YAML: line")]
    [InlineData("yaml", "- batch_size\n", "is not a YAML mapping of config keys")]
    [InlineData("yaml", "batch_size: 2\nbatch_size: 3\n", "line 2: Duplicate key")]
    public void A_bad_file_is_one_line_naming_the_key(string ext, string text, string expected)
    {
        var path = Write($"bad.{ext}", text);
        Assert.Contains(expected, Fails(() => TrainingConfig.Load(path)).Message);
    }

    [Fact]
    public void A_bad_override_names_the_key_as_a_file_would()
    {
        Assert.Contains("unknown config key 'lr'", Fails(() => TrainingConfig.Load(null, ["lr=1"])).Message);
        Assert.Contains("batch_size must be an integer, got \"six\"", Fails(() => TrainingConfig.Load(null, ["batch_size=six"])).Message);
        Assert.Contains("config file not found", Fails(() => TrainingConfig.Load(_tmp.File("none.yaml"))).Message);
    }

    [Fact]
    public void The_saved_config_reads_back_as_the_same_config()
    {
        var cfg = TrainingConfig.Load(Write("c.yaml", "batch_size: 3\nprecision: bf16\ndw_widths: [8, 1]\n"));
        Assert.Empty(cfg.Differences(TrainingConfig.FromJson(cfg.ToJson())));
    }
}
