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
