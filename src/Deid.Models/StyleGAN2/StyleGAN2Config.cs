using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Deid.Models.StyleGAN2;

/// <summary>
/// Shape of a rosinality-style StyleGAN2 generator. The JSON form (snake_case, channel table keyed by
/// resolution) is the one stored in <c>__metadata__["config"]</c> of our safetensors files, so a weight file
/// is enough to rebuild its network.
/// </summary>
public sealed record StyleGAN2Config
{
    public int Size { get; init; } = 256;
    public int StyleDim { get; init; } = 512;
    public int NMlp { get; init; } = 8;
    public int ChannelMultiplier { get; init; } = 2;
    /// <summary>Channels per resolution (4…1024); null means rosinality's table for <see cref="ChannelMultiplier"/>.</summary>
    public IReadOnlyDictionary<int, int>? Channels { get; init; }
    public double LrMlp { get; init; } = 0.01;
    public int[] BlurKernel { get; init; } = [1, 3, 3, 1];

    public int LogSize => (int)Math.Round(Math.Log2(Size));
    public int NLatent => LogSize * 2 - 2;
    public int NumLayers => (LogSize - 2) * 2 + 1;

    /// <summary>The FFHQ 256² generator the paper uses (config-f widths, 8-layer mapping).</summary>
    public static StyleGAN2Config Ffhq256 { get; } = new();

    public static IReadOnlyDictionary<int, int> DefaultChannels(int channelMultiplier) => new Dictionary<int, int>
    {
        [4] = 512, [8] = 512, [16] = 512, [32] = 512,
        [64] = 256 * channelMultiplier, [128] = 128 * channelMultiplier, [256] = 64 * channelMultiplier,
        [512] = 32 * channelMultiplier, [1024] = 16 * channelMultiplier,
    };

    public int ChannelsAt(int resolution)
    {
        var table = Channels ?? DefaultChannels(ChannelMultiplier);
        return table.TryGetValue(resolution, out var c)
            ? c
            : throw new ArgumentException($"StyleGAN2 config has no channel count for resolution {resolution}");
    }

    public void Validate()
    {
        if (Size < 8 || Size > 1024 || (Size & (Size - 1)) != 0)
            throw new ArgumentException($"StyleGAN2 size must be a power of two between 8 and 1024, got {Size}");
        if (StyleDim <= 0) throw new ArgumentException($"StyleGAN2 style_dim must be positive, got {StyleDim}");
        if (NMlp < 0) throw new ArgumentException($"StyleGAN2 n_mlp must be >= 0, got {NMlp}");
        if (BlurKernel.Length < 2) throw new ArgumentException("StyleGAN2 blur_kernel needs at least 2 taps");
        for (int r = 4; r <= Size; r *= 2)
            if (ChannelsAt(r) <= 0) throw new ArgumentException($"StyleGAN2 channels at {r} must be positive");
    }

    public string ToJson()
    {
        var channels = new JsonObject();
        foreach (var (res, c) in (Channels ?? DefaultChannels(ChannelMultiplier)).OrderBy(kv => kv.Key))
            channels[res.ToString(CultureInfo.InvariantCulture)] = c;
        var o = new JsonObject
        {
            ["class"] = "rosinality/stylegan2-pytorch model.Generator",
            ["size"] = Size,
            ["style_dim"] = StyleDim,
            ["n_mlp"] = NMlp,
            ["channel_multiplier"] = ChannelMultiplier,
            ["blur_kernel"] = new JsonArray(BlurKernel.Select(k => (JsonNode)k).ToArray()),
            ["lr_mlp"] = LrMlp,
            ["channels"] = channels,
            ["n_latent"] = NLatent,
            ["num_layers"] = NumLayers,
        };
        return o.ToJsonString();
    }

    /// <summary>Parses the metadata form; informative fields (class, n_latent, init, …) are ignored.</summary>
    public static StyleGAN2Config FromJson(string json)
    {
        JsonNode? node;
        try { node = JsonNode.Parse(json); }
        catch (JsonException e) { throw new ArgumentException($"StyleGAN2 config is not valid JSON: {e.Message}", e); }
        if (node is not JsonObject o) throw new ArgumentException("StyleGAN2 config must be a JSON object");
        var cfg = new StyleGAN2Config();
        int Int(string k, int dflt) => o[k] is JsonValue v ? v.GetValue<int>() : dflt;
        cfg = cfg with
        {
            Size = Int("size", cfg.Size),
            StyleDim = Int("style_dim", cfg.StyleDim),
            NMlp = Int("n_mlp", cfg.NMlp),
            ChannelMultiplier = Int("channel_multiplier", cfg.ChannelMultiplier),
            LrMlp = o["lr_mlp"] is JsonValue lr ? lr.GetValue<double>() : cfg.LrMlp,
            BlurKernel = o["blur_kernel"] is JsonArray bk ? bk.Select(x => x!.GetValue<int>()).ToArray() : cfg.BlurKernel,
            Channels = o["channels"] is JsonObject ch
                ? ch.ToDictionary(kv => int.Parse(kv.Key, CultureInfo.InvariantCulture), kv => kv.Value!.GetValue<int>())
                : null,
        };
        cfg.Validate();
        return cfg;
    }
}
