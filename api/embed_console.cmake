# embed_console.cmake - build step (cmake -P): every file of api/console/ as a C array with its media
# type and an ETag (a hash of its bytes), written as the table api/console.h declares.
# Usage: cmake -DSRC=<api/console dir> -DOUT=<file.c> -P embed_console.cmake
file(GLOB names RELATIVE ${SRC} ${SRC}/*)
list(SORT names)
set(arrays "")
set(entries "")
set(i 0)
foreach(name IN LISTS names)
  if(NOT name MATCHES "^[A-Za-z0-9_-][A-Za-z0-9._-]*$")
    message(FATAL_ERROR "api/console/${name}: file names are letters, digits, '.', '_' and '-' only")
  endif()
  if(name MATCHES "\\.html$")
    set(type "text/html; charset=utf-8")
  elseif(name MATCHES "\\.css$")
    set(type "text/css; charset=utf-8")
  elseif(name MATCHES "\\.js$")
    set(type "text/javascript; charset=utf-8")
  elseif(name MATCHES "\\.svg$")
    set(type "image/svg+xml")
  elseif(name MATCHES "\\.png$")
    set(type "image/png")
  else()
    message(FATAL_ERROR "api/console/${name}: unknown file type (add its media type to api/embed_console.cmake)")
  endif()
  file(SIZE ${SRC}/${name} size)
  if(size EQUAL 0)
    message(FATAL_ERROR "api/console/${name}: empty file")
  endif()
  file(SHA256 ${SRC}/${name} sum)
  string(SUBSTRING "${sum}" 0 32 etag)
  file(READ ${SRC}/${name} hex HEX)
  string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
  string(APPEND arrays "static const unsigned char file${i}[] = {${bytes}};\n")
  string(APPEND entries "    {\"${name}\", \"${type}\", \"\\\"${etag}\\\"\", file${i}, sizeof(file${i})},\n")
  math(EXPR i "${i} + 1")
endforeach()
file(WRITE ${OUT}.tmp
  "/* generated from api/console/ by api/embed_console.cmake: do not edit */\n"
  "#include \"console.h\"\n"
  "${arrays}"
  "const bp_console_file_t bp_console_files[] = {\n${entries}};\n"
  "const size_t bp_console_nfiles = ${i};\n")
file(RENAME ${OUT}.tmp ${OUT})
