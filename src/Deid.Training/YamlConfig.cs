using System.Globalization;
using System.Text.Json.Nodes;
using YamlDotNet.Core;
using YamlDotNet.RepresentationModel;

namespace Deid.Training;

/// <summary>
/// A YAML training config read into the JSON tree a JSON config gives (mappings → objects, sequences → arrays), so
/// one reader checks both. Plain scalars are typed as YAML 1.2's core schema types them (null, true/false, numbers);
/// quoted scalars are always strings, so <c>batch_size: "6"</c> is a wrong type, as it is in JSON. A key given twice
/// is YamlDotNet's own error.
/// </summary>
internal static class YamlConfig
{
    public static JsonObject Parse(string text, string source)
    {
        var stream = new YamlStream();
        try { stream.Load(new StringReader(text)); }
        catch (YamlException e) { throw new TrainingConfigException($"{source} is not valid YAML: {OneLine(e)}", e); }
        if (stream.Documents.Count == 0) return new JsonObject();   // an empty file: the defaults, as `{}` in JSON
        if (stream.Documents.Count > 1) throw new TrainingConfigException($"{source} holds {stream.Documents.Count} YAML documents; a config is one mapping");
        if (stream.Documents[0].RootNode is not YamlMappingNode root) throw new TrainingConfigException($"{source} is not a YAML mapping of config keys");
        return (JsonObject)ToJson(root, source)!;
    }

    private static JsonNode? ToJson(YamlNode node, string source) => node switch
    {
        YamlMappingNode map => Object(map, source),
        YamlSequenceNode seq => new JsonArray(seq.Children.Select(c => ToJson(c, source)).ToArray()),
        YamlScalarNode s => Scalar(s),
        _ => throw new TrainingConfigException($"{source}: unsupported YAML node at {node.Start}"),
    };

    private static JsonObject Object(YamlMappingNode map, string source)
    {
        var o = new JsonObject();
        foreach (var (k, v) in map.Children)
        {
            if (k is not YamlScalarNode { Value: { } key }) throw new TrainingConfigException($"{source}: a config key must be a plain name (line {k.Start.Line})");
            o[key] = ToJson(v, source);
        }
        return o;
    }

    private static JsonNode? Scalar(YamlScalarNode s)
    {
        var v = s.Value ?? "";
        if (s.Style is not ScalarStyle.Plain) return JsonValue.Create(v);
        switch (v)
        {
            case "" or "~" or "null" or "Null" or "NULL": return null;
            case "true" or "True" or "TRUE": return JsonValue.Create(true);
            case "false" or "False" or "FALSE": return JsonValue.Create(false);
        }
        if (long.TryParse(v, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var l)) return JsonValue.Create(l);
        if (double.TryParse(v, NumberStyles.Float, CultureInfo.InvariantCulture, out var d) && double.IsFinite(d)) return JsonValue.Create(d);
        return JsonValue.Create(v);
    }

    // YamlDotNet's messages start with the position "(Line: 3, Col: 1, Idx: 20) - (…): what"; keep the line and the what.
    private static string OneLine(YamlException e) => $"line {e.Start.Line}: {e.Message.Split("): ", 2)[^1].Split('\n')[0].Trim()}";
}
