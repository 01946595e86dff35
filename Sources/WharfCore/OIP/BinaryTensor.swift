/// Little-endian, row-major tensor bytes of the binary tensor data extension, to and from doubles.
enum BinaryTensor {
    static func decode(_ bytes: UnsafeRawBufferPointer, as datatype: TensorDatatype) -> [Double] {
        guard let width = datatype.byteWidth else { return [] }
        let count = bytes.count / width
        return [Double](unsafeUninitializedCapacity: count) { buffer, initialized in
            for index in 0..<count {
                let offset = index * width
                buffer[index] = switch datatype {
                case .bool: bytes[offset] == 0 ? 0 : 1
                case .uint8: Double(bytes[offset])
                case .int8: Double(Int8(bitPattern: bytes[offset]))
                case .uint16: Double(UInt16(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt16.self)))
                case .int16: Double(Int16(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: Int16.self)))
                case .uint32: Double(UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt32.self)))
                case .int32: Double(Int32(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: Int32.self)))
                case .uint64: Double(UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt64.self)))
                case .int64: Double(Int64(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: Int64.self)))
                case .fp16: Double(halfToFloat(UInt16(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt16.self))))
                case .bf16:
                    Double(Float(bitPattern: UInt32(UInt16(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt16.self))) << 16))
                case .fp32: Double(Float(bitPattern: UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt32.self))))
                case .fp64: Double(bitPattern: UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt64.self)))
                case .bytes: 0
                }
            }
            initialized = count
        }
    }

    /// Appends `values` as `datatype` (FP64, FP32, INT64, INT32, BOOL) in little-endian bytes.
    static func encode(_ values: [Double], as datatype: TensorDatatype, into output: inout [UInt8]) {
        output.reserveCapacity(output.count + values.count * (datatype.byteWidth ?? 8))
        for value in values {
            switch datatype {
            case .fp32: append(Float(value).bitPattern.littleEndian, to: &output)
            case .int64: append(UInt64(bitPattern: Int64(value)).littleEndian, to: &output)
            case .int32: append(UInt32(bitPattern: Int32(value)).littleEndian, to: &output)
            case .bool: output.append(value == 0 ? 0 : 1)
            default: append(value.bitPattern.littleEndian, to: &output)
            }
        }
    }

    private static func append<T: FixedWidthInteger>(_ value: T, to output: inout [UInt8]) {
        withUnsafeBytes(of: value) { output.append(contentsOf: $0) }
    }

    /// IEEE 754 half precision to single, including subnormals, infinities and NaN.
    static func halfToFloat(_ bits: UInt16) -> Float {
        let sign = UInt32(bits & 0x8000) << 16
        let exponent = Int((bits >> 10) & 0x1F)
        let fraction = UInt32(bits & 0x03FF)
        if exponent == 0x1F { return Float(bitPattern: sign | 0x7F80_0000 | (fraction << 13)) }
        if exponent == 0 {
            // Subnormal (or zero): fraction × 2^-24.
            let magnitude = Float(fraction) * 0x1p-24
            return sign == 0 ? magnitude : -magnitude
        }
        return Float(bitPattern: sign | (UInt32(exponent + 112) << 23) | (fraction << 13))
    }
}
