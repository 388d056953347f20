// Apache Avro's own single-object encoder and decoder (org.apache.avro.message), driven by
// tests/interop/avro_java.py. Launched as a single source file, without a compile step:
//   java -cp <avro and its dependencies> AvroSingleObject.java <schema dir>
// Reads one JSON request a line on stdin and writes one JSON answer a line on stdout:
//   {"op":"schema","type":T}              -> {"ok":true,"canonical":...,"fingerprint":<8 bytes, hex, as in the header>}
//   {"op":"encode","type":T,"event":{..}} -> {"ok":true,"hex":<single-object bytes>}
//   {"op":"decode","type":T,"hex":".."}   -> {"ok":true,"event":{..}}
// Any failure of one request is its answer: {"ok":false,"error":"<exception class>: <message>"}.
//
// The schemas are read straight from the .avsc files with Avro's Schema.Parser (Envelope first,
// so each event schema can name it); nothing here comes from Rewind's Python code.

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.BufferedReader;
import java.io.ByteArrayOutputStream;
import java.io.FileOutputStream;
import java.io.FileDescriptor;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.HexFormat;
import java.util.Map;
import java.util.TreeMap;
import org.apache.avro.Schema;
import org.apache.avro.SchemaNormalization;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.GenericDatumReader;
import org.apache.avro.generic.GenericDatumWriter;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.io.DecoderFactory;
import org.apache.avro.io.EncoderFactory;
import org.apache.avro.io.JsonEncoder;
import org.apache.avro.message.BinaryMessageDecoder;
import org.apache.avro.message.BinaryMessageEncoder;

public class AvroSingleObject {
  private static final HexFormat HEX = HexFormat.of();
  private static final ObjectMapper MAPPER = new ObjectMapper();

  public static void main(String[] args) throws Exception {
    Map<String, Schema> schemas = load(Paths.get(args[0]));
    BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
    PrintStream out = new PrintStream(new FileOutputStream(FileDescriptor.out), false, StandardCharsets.UTF_8);
    String line;
    while ((line = in.readLine()) != null) {
      if (line.isBlank()) {
        continue;
      }
      ObjectNode answer = MAPPER.createObjectNode();
      try {
        answer(MAPPER.readTree(line), schemas, answer);
        answer.put("ok", true);
      } catch (Exception e) {
        answer.removeAll();
        answer.put("ok", false);
        answer.put("error", e.getClass().getName() + ": " + e.getMessage());
      }
      out.println(MAPPER.writeValueAsString(answer));
    }
    out.flush();
  }

  /** Every event schema in the directory, by file name without .avsc ("OrderPlaced.v3"), parsed after Envelope.v1.avsc. */
  private static Map<String, Schema> load(Path dir) throws Exception {
    Map<String, Schema> schemas = new TreeMap<>();
    try (DirectoryStream<Path> files = Files.newDirectoryStream(dir, "*.avsc")) {
      for (Path file : files) {
        String name = file.getFileName().toString();
        if (name.startsWith("Envelope.")) {
          continue;
        }
        Schema.Parser parser = new Schema.Parser();
        parser.parse(dir.resolve("Envelope.v1.avsc").toFile());
        Schema schema = parser.parse(file.toFile());
        schemas.put(name.substring(0, name.length() - ".avsc".length()), schema);  // "OrderPlaced.v3": one entry per version
      }
    }
    return schemas;
  }

  private static void answer(JsonNode request, Map<String, Schema> schemas, ObjectNode answer) throws Exception {
    String type = request.get("type").asText();
    Schema schema = schemas.get(type);
    if (schema == null) {
      throw new IllegalArgumentException("no schema named " + type);
    }
    switch (request.get("op").asText()) {
      case "schema" -> {
        answer.put("canonical", SchemaNormalization.toParsingForm(schema));
        answer.put("fingerprint", HEX.formatHex(SchemaNormalization.parsingFingerprint("CRC-64-AVRO", schema)));
        answer.put("fingerprint64", SchemaNormalization.parsingFingerprint64(schema));
      }
      case "encode" -> {
        String json = MAPPER.writeValueAsString(request.get("event"));
        GenericRecord record = new GenericDatumReader<GenericRecord>(schema).read(null, DecoderFactory.get().jsonDecoder(schema, json));
        ByteBuffer encoded = new BinaryMessageEncoder<GenericRecord>(GenericData.get(), schema).encode(record);
        byte[] bytes = new byte[encoded.remaining()];
        encoded.get(bytes);
        answer.put("hex", HEX.formatHex(bytes));
      }
      case "decode" -> {
        BinaryMessageDecoder<GenericRecord> decoder = new BinaryMessageDecoder<>(GenericData.get(), schema);
        GenericRecord record = decoder.decode(HEX.parseHex(request.get("hex").asText()));
        ByteArrayOutputStream json = new ByteArrayOutputStream();
        JsonEncoder encoder = EncoderFactory.get().jsonEncoder(schema, json);
        new GenericDatumWriter<GenericRecord>(schema).write(record, encoder);
        encoder.flush();
        answer.set("event", MAPPER.readTree(json.toByteArray()));
      }
      default -> throw new IllegalArgumentException("unknown op " + request.get("op"));
    }
  }
}
