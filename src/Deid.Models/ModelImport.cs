using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Deid.Models.Encoders;
using Deid.Models.StyleGAN2;
using Deid.Models.Weights;
using TorchSharp;
using static TorchSharp.torch;

namespace Deid.Models;

/// <summary>What an import wrote.</summary>
public sealed record ImportResult(
    string Kind, string OutputPath, int TensorCount, long Elements, string SourceSha256,
    IReadOnlyDictionary<string, string> Metadata, IReadOnlyList<string> Notes);

/// <summary>
/// Converts published PyTorch checkpoints (rosinality StyleGAN2, pSp's IR-SE50, torchvision Inception-v3, and the
/// ID-disentanglement PyTorch port's trained E_attr and M) into our safetensors files: names and shapes are checked
/// strictly against a freshly built network, the architecture goes into <c>__metadata__["config"]</c> and the
/// source's sha256 is recorded.
/// </summary>
public static partial class ModelImport
{
    public static readonly IReadOnlyList<string> Kinds = ["stylegan2", "irse50", "inception", PortAttrEncoder, PortMapper];

    /// <param name="key">
    /// Where the state dict sits in the checkpoint: a top-level key (<c>g_ema</c>, the stylegan2 default), a path
    /// <c>a/b</c> into nested dicts, optionally ending in a name prefix to select and strip (<c>state_dict/decoder.</c>).
    /// </param>
    public static ImportResult Import(string ptPath, string kind, string outPath, string? key = null)
    {
        kind = kind.ToLowerInvariant();
        if (!Kinds.Contains(kind)) throw new ArgumentException($"unknown model kind '{kind}' (expected {string.Join(", ", Kinds)})");
        if (Path.GetFullPath(ptPath) == Path.GetFullPath(outPath)) throw new ArgumentException("the output would overwrite the checkpoint");
        string sha = File.Exists(ptPath) ? SafeTensors.Sha256(ptPath) : throw new WeightsException($"checkpoint not found: {ptPath}");
        if (key is not null && IsPortKind(kind))
            throw new ArgumentException($"--key does not apply to {kind}: the port's files are whole pickled modules, not dicts");
        var root = PyTorchCheckpoint.Load(ptPath);
        try
        {
            if (IsPortKind(kind)) return ImportPort(root, ptPath, kind, outPath, sha);
            key ??= kind == "stylegan2" ? "g_ema" : null;
            var sd = Select(root, key);
            var notes = new List<string>();
            var meta = new Dictionary<string, string>
            {
                ["format"] = "deid-weights-1",
                ["kind"] = kind,
                ["source"] = Path.GetFileName(ptPath),
                ["source_sha256"] = sha,
                ["source_key"] = key ?? "",
            };
            List<KeyValuePair<string, Tensor>> output;
            using var owned = new DisposeList();
            switch (kind)
            {
                case "stylegan2":
                {
                    var cfg = InferStyleGAN2Config(sd);
                    using var g = new StyleGAN2.Generator(cfg);
                    output = Ordered(g, sd, kind, allowMissingBn: false);
                    meta["config"] = cfg.ToJson();
                    if (root is PyDict top && top.TryGetValue("latent_avg", out var la) && la is Tensor avg)
                    {
                        if (avg.numel() != cfg.StyleDim) throw new WeightsException($"latent_avg has {avg.numel()} elements, style_dim is {cfg.StyleDim}");
                        output.Add(new("latent_avg", owned.Add(avg.reshape(cfg.StyleDim))));
                        notes.Add("latent_avg stored (the truncation centre of the published model)");
                    }
                    break;
                }
                case "irse50":
                {
                    using var m = new IrSe50();
                    output = Ordered(m, sd, kind, allowMissingBn: true);
                    meta["config"] = new JsonObject { ["class"] = "pSp model_irse.Backbone", ["input_size"] = 112, ["num_layers"] = 50, ["mode"] = "ir_se" }.ToJsonString();
                    break;
                }
                default:
                {
                    bool aux = sd.Keys.Any(k => k.StartsWith("AuxLogits.", StringComparison.Ordinal));
                    long classes = sd.TryGetValue("fc.weight", out var fc) ? fc.shape[0] : 1000;
                    using var m = new InceptionV3(numClasses: classes, auxLogits: aux);
                    output = Ordered(m, sd, kind, allowMissingBn: true);
                    meta["config"] = new JsonObject { ["class"] = "torchvision inception_v3", ["num_classes"] = classes, ["aux_logits"] = aux }.ToJsonString();
                    break;
                }
            }
            int missingBn = output.Count(kv => kv.Value is null);
            if (missingBn > 0) notes.Add($"{missingBn} BatchNorm num_batches_tracked counters absent (pre-0.4.1 checkpoint); they are unused at inference");
            output = output.Where(kv => kv.Value is not null).ToList();
            SafeTensors.Save(outPath, output, meta);
            return new ImportResult(kind, outPath, output.Count, output.Sum(kv => kv.Value.numel()), sha, meta, notes);
        }
        finally
        {
            PyTorchCheckpoint.DisposeTensors(root);
        }
    }

    /// <summary>Size, mapping depth, style size and channel table of a rosinality generator from its tensor shapes.</summary>
    public static StyleGAN2Config InferStyleGAN2Config(IReadOnlyDictionary<string, Tensor> sd)
    {
        Tensor Need(string k) => sd.TryGetValue(k, out var t) ? t : throw new WeightsException($"not a StyleGAN2 generator state dict: '{k}' is missing");
        int nMlp = sd.Keys.Count(k => MlpKey().IsMatch(k));
        int styleDim = (int)Need("conv1.conv.modulation.weight").shape[1];
        int nRgb = sd.Keys.Count(k => RgbKey().IsMatch(k));
        int logSize = nRgb + 2;
        if (logSize > 10) throw new WeightsException($"StyleGAN2 checkpoint has {nRgb} to_rgbs layers (more than 1024 px)");
        var channels = new Dictionary<int, int> { [4] = (int)Need("input.input").shape[1] };
        for (int i = 3; i <= logSize; i++)
            channels[1 << i] = (int)Need($"convs.{2 * (i - 3)}.conv.weight").shape[1];
        int? multiplier = null;
        foreach (var cm in new[] { 2, 1, 4 })
        {
            var dflt = StyleGAN2Config.DefaultChannels(cm);
            if (channels.All(kv => dflt[kv.Key] == kv.Value)) { multiplier = cm; break; }
        }
        var cfg = new StyleGAN2Config
        {
            Size = 1 << logSize,
            StyleDim = styleDim,
            NMlp = nMlp,
            ChannelMultiplier = multiplier ?? 1,
            Channels = multiplier is null ? channels : null,
        };
        cfg.Validate();
        return cfg;
    }

    private sealed class DisposeList : IDisposable
    {
        private readonly List<Tensor> _items = new();
        public Tensor Add(Tensor t) { _items.Add(t); return t; }
        public void Dispose() { foreach (var t in _items) t.Dispose(); }
    }

    [GeneratedRegex(@"^style\.\d+\.weight$")]
    private static partial Regex MlpKey();

    [GeneratedRegex(@"^to_rgbs\.\d+\.conv\.weight$")]
    private static partial Regex RgbKey();

    private static Dictionary<string, Tensor> Select(object? root, string? key)
    {
        if (key is null || !key.Contains('/') && !key.EndsWith('.')) return PyTorchCheckpoint.StateDict(root, key);
        var parts = key.Split('/');
        string prefix = parts[^1].EndsWith('.') ? parts[^1] : "";
        var path = prefix.Length > 0 ? parts[..^1] : parts;
        object? node = root;
        foreach (var p in path)
            node = node is PyDict d && d.TryGetValue(p, out var v) ? v : throw new WeightsException($"the checkpoint has no entry '{p}' on the path '{key}'");
        var sd = PyTorchCheckpoint.StateDict(node);
        return sd.Where(kv => kv.Key.StartsWith(prefix, StringComparison.Ordinal))
                 .ToDictionary(kv => kv.Key[prefix.Length..], kv => kv.Value);
    }

    /// <summary>
    /// The checkpoint's tensors in the network's state-dict order; a null value marks an absent num_batches_tracked.
    /// <paramref name="sourceName"/> gives a tensor's name in the file where it differs from ours (the port's
    /// <c>model.N.…</c> indices), so a problem names the tensor as the file spells it.
    /// </summary>
    private static List<KeyValuePair<string, Tensor>> Ordered(nn.Module module, Dictionary<string, Tensor> sd, string kind, bool allowMissingBn,
        Func<string, string>? sourceName = null)
    {
        string Named(string name) => sourceName?.Invoke(name) is { } src && src != name ? $"'{src}' ({name})" : $"'{name}'";
        var expected = PyTorchOrder.StateDict(module);
        var problems = new List<string>();
        var result = new List<KeyValuePair<string, Tensor>>();
        foreach (var (name, t) in expected)
        {
            if (!sd.TryGetValue(name, out var src))
            {
                if (allowMissingBn && name.EndsWith(".num_batches_tracked", StringComparison.Ordinal)) result.Add(new(name, null!));
                else problems.Add($"missing {Named(name)} {StateDict.Shape(t.shape)}");
            }
            else if (!src.shape.SequenceEqual(t.shape))
                problems.Add($"{Named(name)} is {StateDict.Shape(src.shape)} in the checkpoint, {StateDict.Shape(t.shape)} in {kind}");
            else
                result.Add(new(name, src));
        }
        foreach (var name in sd.Keys)
            if (!expected.ContainsKey(name)) problems.Add($"unexpected {Named(name)}");
        if (problems.Count > 0)
            throw new WeightsException($"the checkpoint does not match {kind} ({problems.Count(p => p.StartsWith("missing"))} missing, "
                                       + $"{problems.Count(p => p.StartsWith("unexpected"))} unexpected, {problems.Count(p => p.StartsWith('\''))} mis-shaped): " + string.Join("; ", problems.Take(10))
                                       + (problems.Count > 10 ? $"; … and {problems.Count - 10} more" : ""));
        return result;
    }
}
