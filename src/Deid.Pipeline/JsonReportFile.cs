using System.Text.Json;

namespace Deid.Pipeline;

/// <summary>How the run reports become JSON: indented, and written through a temp file and a rename so a reader never sees half a report.</summary>
internal static class JsonReportFile
{
    public static string ToJson(Action<Utf8JsonWriter> write)
    {
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms, new JsonWriterOptions { Indented = true })) write(w);
        return System.Text.Encoding.UTF8.GetString(ms.ToArray());
    }

    /// <summary>
    /// The two groups every report of a run with the latent networks carries, side by side: the networks built with
    /// random weights (empty for a real run) and role → the weights file loaded. One writer, so the anonymize and the
    /// reenact reports cannot drift apart in how they name them.
    /// </summary>
    public static void WriteWeights(Utf8JsonWriter w, IReadOnlyList<string> randomWeights, IReadOnlyDictionary<string, string> modelFiles)
    {
        w.WriteStartArray("randomWeights");
        foreach (var r in randomWeights) w.WriteStringValue(r);
        w.WriteEndArray();
        w.WriteStartObject("modelFiles");
        foreach (var (role, file) in modelFiles) w.WriteString(role, file);
        w.WriteEndObject();
    }

    public static void Write(string path, Action<Utf8JsonWriter> write)
    {
        var full = Path.GetFullPath(path);
        var temp = Path.Combine(Path.GetDirectoryName(full)!, $".{Path.GetFileName(full)}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp");
        try
        {
            using (var stream = File.Create(temp))
            using (var w = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true }))
                write(w);
            File.Move(temp, full, overwrite: true);
        }
        catch
        {
            try { File.Delete(temp); } catch (IOException) { }
            throw;
        }
    }
}
