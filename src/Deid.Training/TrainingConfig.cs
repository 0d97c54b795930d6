using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;

namespace Deid.Training;

/// <summary>A configuration that cannot be used (unknown key, bad value, unreadable file).</summary>
public sealed class TrainingConfigException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>
/// Every choice of the training, with the paper's values as defaults (Nitzan et al. 2020, §3.2-3.3 and §4). Read from a
/// JSON or YAML file (snake_case keys, unknown keys and wrong types rejected) plus <c>key=value</c> overrides; the resolved configuration is
/// saved as <c>config.json</c> in the run and in every checkpoint, and a resume must match it (except
/// <see cref="Steps"/>, which may be extended).
/// </summary>
public sealed record TrainingConfig
{
    // Data and schedule
    public long Seed { get; init; } = 0;
    public int BatchSize { get; init; } = 6;
    public long Steps { get; init; } = 100_000;
    /// <summary>I_id ≠ I_attr on every N-th step (the other steps reconstruct: I_id = I_attr). The paper: 3.</summary>
    public int CrossIdentityEvery { get; init; } = 3;

    // Optimizers: Adam for both sides
    public double LrG { get; init; } = 1e-5;
    public double LrD { get; init; } = 4e-5;
    public double Beta1 { get; init; } = 0.9;
    public double Beta2 { get; init; } = 0.999;

    // Loss weights λ1..λ4, L_rec's α, R1's γ
    public double LambdaAdv { get; init; } = 1;
    public double LambdaId { get; init; } = 1;
    public double LambdaLnd { get; init; } = 0.001;
    public double LambdaRec { get; init; } = 0.02;
    public double RecAlpha { get; init; } = 0.84;
    public double R1Gamma { get; init; } = 10;

    // Networks
    /// <summary>irse50 (pSp's IR-SE50, 512-d) or face-api (face-api.js ResNet, 128-d).</summary>
    public string IdentityEncoder { get; init; } = "irse50";
    /// <summary>M's hidden widths; its last layer is G's W width.</summary>
    public long[] MapperHidden { get; init; } = [2048, 1024, 512];
    public long[] DwWidths { get; init; } = [256, 128, 64, 1];
    /// <summary>InceptionV3 channel multiplier (1: the published network; tests use small ones).</summary>
    public double AttrWidth { get; init; } = 1.0;
    public int AttrInputSize { get; init; } = 299;
    public string AttrNormalization { get; init; } = "minus-one-to-one";
    /// <summary>Start E_attr from these weights (a deid E_attr file, or an imported torchvision InceptionV3); null: random init.</summary>
    public string? AttrInit { get; init; }

    /// <summary>
    /// fp32; bf16 or fp16: the frozen networks (G, E_id, E_lnd) hold and compute in that type while E_attr, M, D_W, the
    /// optimizers and every loss stay fp32 (fp16 only on CUDA, with dynamic loss scaling).
    /// </summary>
    public string Precision { get; init; } = "fp32";

    // Bookkeeping
    public int CheckpointEvery { get; init; } = 1000;
    public int GridEvery { get; init; } = 1000;
    public int ValidateEvery { get; init; } = 1000;
    /// <summary>Images held out from training at the end of the dataset (validation and the grid).</summary>
    public int ValidationCount { get; init; } = 64;
    /// <summary>(identity, attribute) pairs drawn from the held-out images for each validation.</summary>
    public int ValidationPairs { get; init; } = 32;
    public int GridSize { get; init; } = 4;
    /// <summary>Periodic checkpoints kept besides best/ (older ones are removed); 0 keeps all.</summary>
    public int KeepCheckpoints { get; init; } = 3;

    /// <summary>Keys whose change a resume accepts.</summary>
    public static readonly IReadOnlySet<string> ResumableKeys = new HashSet<string> { "steps" };

    public static readonly JsonSerializerOptions Json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        WriteIndented = true,
        UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
        NumberHandling = JsonNumberHandling.Strict,
    };

    public string ToJson() => JsonSerializer.Serialize(this, Json);

    public static TrainingConfig FromJson(string json, string source = "config")
    {
        JsonObject node;
        try { node = JsonNode.Parse(json) as JsonObject ?? throw new TrainingConfigException($"{source} is not a JSON object"); }
        catch (JsonException e) { throw new TrainingConfigException($"{source} is not valid JSON: {FirstLine(e.Message)}", e); }
        return FromNode(node, source);
    }

    /// <summary>
    /// The defaults, then the file's keys (<c>.yaml</c>/<c>.yml</c>: YAML, anything else: JSON), then the
    /// <c>key=value</c> overrides, validated as one: every source gives the same JSON tree, so an unknown key or a
    /// value of the wrong type is reported the same way whichever way it came.
    /// </summary>
    public static TrainingConfig Load(string? path, IEnumerable<string>? overrides = null)
    {
        var node = path is null ? new JsonObject() : ReadFile(path);
        foreach (var o in overrides ?? [])
        {
            int eq = o.IndexOf('=');
            if (eq <= 0) throw new TrainingConfigException($"override '{o}' is not key=value");
            var text = o[(eq + 1)..].Trim();
            JsonNode? value;
            try { value = JsonNode.Parse(text); }
            catch (JsonException) { value = JsonValue.Create(text); }  // bare words are strings
            node[o[..eq].Trim().Replace('-', '_')] = value;
        }
        return FromNode(node, path ?? "config");
    }

    private static JsonObject ReadFile(string path)
    {
        if (!File.Exists(path)) throw new TrainingConfigException($"config file not found: {path}");
        string text;
        try { text = File.ReadAllText(path); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { throw new TrainingConfigException($"cannot read {path}: {FirstLine(e.Message)}", e); }
        var ext = Path.GetExtension(path).ToLowerInvariant();
        if (ext is ".yaml" or ".yml") return YamlConfig.Parse(text, path);
        try { return JsonNode.Parse(text) as JsonObject ?? throw new TrainingConfigException($"{path} is not a JSON object"); }
        catch (JsonException e) { throw new TrainingConfigException($"{path} is not valid JSON: {FirstLine(e.Message)}", e); }
    }

    /// <summary>Keys of <paramref name="node"/> over the defaults: unknown keys and values of the wrong type named, then <see cref="Validate"/>.</summary>
    private static TrainingConfig FromNode(JsonObject node, string source)
    {
        var merged = JsonNode.Parse(new TrainingConfig().ToJson())!.AsObject();
        foreach (var (key, value) in node)
        {
            if (!KnownKeys.Contains(key)) throw new TrainingConfigException($"{source}: unknown config key '{key}' (known: {string.Join(", ", KnownKeys)})");
            merged[key] = value?.DeepClone();
        }
        TrainingConfig cfg;
        try { cfg = merged.Deserialize<TrainingConfig>(Json)!; }
        catch (JsonException e)
        {
            var key = e.Path?.TrimStart('$', '.').Split('[', '.')[0];
            if (key is null || !KnownKeys.Contains(key)) throw new TrainingConfigException($"{source}: {FirstLine(e.Message)}", e);
            throw new TrainingConfigException($"{source}: {key} must be {Kind(key)}, got {node[key]?.ToJsonString() ?? "null"}", e);
        }
        cfg.Validate();
        return cfg;
    }

    /// <summary>What a key's value must be, in words, from the property's type.</summary>
    private static string Kind(string key)
    {
        var prop = typeof(TrainingConfig).GetProperties().First(p => Json.PropertyNamingPolicy!.ConvertName(p.Name) == key);
        static string Of(Type t) => t == typeof(int) || t == typeof(long) ? "integer" : t == typeof(double) ? "number" : t == typeof(string) ? "string" : t.Name;
        var type = prop.PropertyType;
        var kind = type.IsArray ? $"a list of {Of(type.GetElementType()!)}s" : Of(type) is var k && k == "integer" ? "an integer" : $"a {Of(type)}";
        bool nullable = new System.Reflection.NullabilityInfoContext().Create(prop).ReadState == System.Reflection.NullabilityState.Nullable;
        return nullable ? kind + " or null" : kind;
    }

    public static IReadOnlyList<string> KnownKeys { get; } =
        JsonNode.Parse(new TrainingConfig().ToJson())!.AsObject().Select(kv => kv.Key).ToList();

    /// <summary>Keys whose values differ, "key (this → other)", ignoring <paramref name="ignore"/>.</summary>
    public IReadOnlyList<string> Differences(TrainingConfig other, IReadOnlySet<string>? ignore = null)
    {
        var a = JsonNode.Parse(ToJson())!.AsObject();
        var b = JsonNode.Parse(other.ToJson())!.AsObject();
        var diffs = new List<string>();
        foreach (var (k, v) in a)
        {
            if (ignore?.Contains(k) == true) continue;
            var av = v?.ToJsonString() ?? "null";
            var bv = b[k]?.ToJsonString() ?? "null";
            if (av != bv) diffs.Add($"{k} ({av} → {bv})");
        }
        return diffs;
    }

    public void Validate()
    {
        void Check(bool ok, string what) { if (!ok) throw new TrainingConfigException($"config: {what}"); }
        Check(BatchSize >= 1, $"batch_size must be at least 1, got {BatchSize}");
        Check(Steps >= 0, $"steps must be >= 0, got {Steps}");
        Check(CrossIdentityEvery >= 1, $"cross_identity_every must be at least 1, got {CrossIdentityEvery}");
        foreach (var (k, v) in new[] { ("lr_g", LrG), ("lr_d", LrD) }) Check(v > 0 && double.IsFinite(v), $"{k} must be positive, got {v}");
        Check(Beta1 >= 0 && Beta1 < 1 && Beta2 >= 0 && Beta2 < 1, "beta1 and beta2 must be in [0,1)");
        foreach (var (k, v) in new[] { ("lambda_adv", LambdaAdv), ("lambda_id", LambdaId), ("lambda_lnd", LambdaLnd), ("lambda_rec", LambdaRec), ("r1_gamma", R1Gamma) })
            Check(v >= 0 && double.IsFinite(v), $"{k} must be >= 0, got {v}");
        Check(RecAlpha >= 0 && RecAlpha <= 1, $"rec_alpha must be in [0,1], got {RecAlpha}");
        Check(IdentityEncoder is "irse50" or "face-api", $"identity_encoder must be irse50 or face-api, got '{IdentityEncoder}'");
        Check(MapperHidden.All(w => w > 0), "mapper_hidden widths must be positive");
        Check(DwWidths.Length > 0 && DwWidths.All(w => w > 0) && DwWidths[^1] == 1, "dw_widths must be positive and end with 1");
        Check(Precision is "fp32" or "bf16" or "fp16", $"precision must be fp32, bf16 or fp16, got '{Precision}'");
        Check(AttrWidth > 0, $"attr_width must be positive, got {AttrWidth}");
        Check(AttrInputSize >= 75, $"attr_input_size must be at least 75, got {AttrInputSize}");
        Check(AttrNormalization is "minus-one-to-one" or "imagenet" or "zero-255", $"attr_normalization must be minus-one-to-one, imagenet or zero-255, got '{AttrNormalization}'");
        foreach (var (k, v) in new[] { ("checkpoint_every", CheckpointEvery), ("grid_every", GridEvery), ("validate_every", ValidateEvery), ("keep_checkpoints", KeepCheckpoints) })
            Check(v >= 0, $"{k} must be >= 0 (0 disables), got {v}");
        Check(ValidationCount >= 0, $"validation_count must be >= 0, got {ValidationCount}");
        Check(ValidationPairs >= 1, $"validation_pairs must be at least 1, got {ValidationPairs}");
        Check(GridSize >= 1, $"grid_size must be at least 1, got {GridSize}");
    }

    private static string FirstLine(string s) => s.Split('\n')[0].Trim();

    internal static string Num(double v) => v.ToString("R", CultureInfo.InvariantCulture);
}
