using System.Text.Json.Nodes;
using Deid.Models.Encoders;
using Deid.Models.Mapping;
using Deid.Models.Weights;
using TorchSharp;

namespace Deid.Models;

/// <summary>
/// The on-disk form of the two trained parts of the method, E_attr and M: one safetensors file each, tensors under
/// our module names, the architecture in <c>__metadata__["config"]</c> and, for E_attr, the input convention the
/// weights were trained with. <c>deid models import --as port-attr-encoder|port-mapper</c>, <c>deid train</c>
/// checkpoints and latent mode's loader all use this one format, so a trained run loads with no conversion
/// (<c>--weights-dir RUN/best</c> holds exactly these two files).
/// </summary>
public static class LatentWeights
{
    public const string AttrEncoderFile = "E_attr.safetensors";
    public const string MapperFile = "M.safetensors";

    public const string FormatKey = "format";
    public const string Format = "deid-weights-1";
    public const string KindKey = "kind";
    public const string ConfigKey = "config";
    public const string NormalizationKey = "input_normalization";
    public const string AttrEncoderKind = "attr-encoder";
    public const string MapperKind = "mapper";

    public static string ToName(InceptionInputNormalization n) => n switch
    {
        InceptionInputNormalization.MinusOneToOne => "minus-one-to-one",
        InceptionInputNormalization.ImageNet => "imagenet",
        InceptionInputNormalization.Zero255 => "zero-255",
        _ => throw new ArgumentOutOfRangeException(nameof(n)),
    };

    public static InceptionInputNormalization ParseNormalization(string? name) => name switch
    {
        "minus-one-to-one" => InceptionInputNormalization.MinusOneToOne,
        "imagenet" => InceptionInputNormalization.ImageNet,
        "zero-255" => InceptionInputNormalization.Zero255,
        _ => throw new WeightsException($"unknown E_attr input normalization '{name}' (expected minus-one-to-one, imagenet or zero-255)"),
    };

    /// <summary>Writes E_attr (atomically) with its architecture and input convention.</summary>
    public static void SaveAttrEncoder(string path, InceptionV3 net, InceptionInputNormalization normalization,
        IReadOnlyDictionary<string, string>? extraMetadata = null)
    {
        var config = new JsonObject
        {
            ["class"] = "InceptionV3", ["num_classes"] = net.NumClasses, ["aux_logits"] = net.HasAuxLogits,
            ["width"] = net.Width, ["feature_dim"] = net.FeatureDim,
        };
        Save(path, net, AttrEncoderKind, config, extraMetadata, (NormalizationKey, ToName(normalization)));
    }

    /// <summary>Writes M (atomically) with its layer widths.</summary>
    public static void SaveMapper(string path, M mapper, IReadOnlyDictionary<string, string>? extraMetadata = null)
    {
        var widths = new JsonArray();
        foreach (var w in mapper.Widths) widths.Add(w);
        var config = new JsonObject
        {
            ["class"] = "M", ["input_dim"] = mapper.InputDim, ["widths"] = widths,
            ["negative_slope"] = mapper.NegativeSlope,
        };
        Save(path, mapper, MapperKind, config, extraMetadata);
    }

    /// <summary>Builds E_attr from its file (architecture from the metadata) and loads it strictly.</summary>
    public static (InceptionV3 Net, InceptionInputNormalization Normalization) LoadAttrEncoder(string path)
    {
        using var file = SafeTensors.Open(path);
        var config = Config(file, AttrEncoderKind);
        var net = new InceptionV3(
            numClasses: config["num_classes"]?.GetValue<long>() ?? 1000,
            auxLogits: config["aux_logits"]?.GetValue<bool>() ?? false,
            width: config["width"]?.GetValue<double>() ?? 1.0);
        try
        {
            StateDict.LoadFile(net, path);
            var norm = ParseNormalization(file.Metadata.GetValueOrDefault(NormalizationKey));
            return (net, norm);
        }
        catch (WeightsException e)
        {
            net.Dispose();
            throw new WeightsException($"{path}: {e.Message}", e);
        }
        catch { net.Dispose(); throw; }
    }

    /// <summary>Builds M from its file (widths from the metadata) and loads it strictly.</summary>
    public static M LoadMapper(string path)
    {
        using var file = SafeTensors.Open(path);
        var config = Config(file, MapperKind);
        var widths = (config["widths"] as JsonArray)?.Select(n => n!.GetValue<long>()).ToArray()
                     ?? throw new WeightsException($"{path}: the mapper's config has no widths");
        var m = new M(config["input_dim"]?.GetValue<long>() ?? throw new WeightsException($"{path}: the mapper's config has no input_dim"),
            widths, config["negative_slope"]?.GetValue<double>() ?? 0.2);
        try { StateDict.LoadFile(m, path); return m; }
        catch (WeightsException e) { m.Dispose(); throw new WeightsException($"{path}: {e.Message}", e); }
        catch { m.Dispose(); throw; }
    }

    private static JsonObject Config(SafeTensorsFile file, string kind)
    {
        var md = file.Metadata;
        if (md.GetValueOrDefault(KindKey) is { } k && k != kind)
            throw new WeightsException($"{file.Path} holds a '{k}', not a '{kind}'");
        if (md.GetValueOrDefault(ConfigKey) is not { } json)
            throw new WeightsException($"{file.Path} has no '{ConfigKey}' metadata: not written by deid (import the published file with `deid models import`)");
        try { return JsonNode.Parse(json) as JsonObject ?? throw new WeightsException($"{file.Path}: its config is not a JSON object"); }
        catch (System.Text.Json.JsonException e) { throw new WeightsException($"{file.Path}: its config is not valid JSON ({e.Message})", e); }
    }

    private static void Save(string path, torch.nn.Module module, string kind, JsonObject config,
        IReadOnlyDictionary<string, string>? extra, params (string Key, string Value)[] more)
    {
        var meta = new Dictionary<string, string>();
        if (extra != null) foreach (var (k, v) in extra) meta[k] = v;
        meta[FormatKey] = Format;
        meta[KindKey] = kind;
        meta[ConfigKey] = config.ToJsonString();
        foreach (var (k, v) in more) meta[k] = v;
        var sd = PyTorchOrder.StateDict(module);
        SafeTensors.Save(path, sd, meta);
    }
}
